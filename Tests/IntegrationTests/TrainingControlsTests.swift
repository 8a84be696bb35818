import DDPCore
import Foundation
import XCTest

/// `trainable: false` and weight constraints under a real `mpirun`, on every update path.
final class TrainingControlsTests: IntegrationTestCase {
    /// Fine-tuning from `init_weights` with the first dense layer and the BatchNorm frozen and
    /// the head under max_norm / non_neg.
    static func yaml(initWeights: String?) -> String {
        """
        seed: 5
        data:
          train: {format: moons, samples: 240, noise: 0.2}
          validation_split: 0.25
          normalize: standardize
        model:
          inputs: 2
          \(initWeights.map { "init_weights: \($0)" } ?? "")
          layers:
            - {type: dense, units: 12, activation: tanh, trainable: \(initWeights == nil ? "true" : "false")}
            - {type: batchnorm, trainable: \(initWeights == nil ? "true" : "false")}
            - {type: dropout, rate: 0.2}
            - {type: dense, units: 8, activation: relu, kernel_constraint: {max_norm: 0.4}, bias_constraint: {non_neg: true}}
            - {type: dense, units: 2}
        loss: cross_entropy
        optimizer: {type: adamw, lr: 0.02, weight_decay: 0.05, decay: all}
        training: {epochs: 3, batch_size: 32}
        checkpoint: {every_epochs: 1, keep: 5}
        """
    }

    func testFrozenLayersStayBitIdenticalAndConstraintsHoldOnTwoRanks() throws {
        let pretrain = path("pretrain")
        try train(np: nil, config: try writeConfig("pretrain.yaml", Self.yaml(initWeights: nil)), runDirectory: pretrain)
        let start = try readTensors(pretrain + "/model.safetensors")
        let config = try writeConfig("finetune.yaml", Self.yaml(initWeights: pretrain + "/model.safetensors"))
        let frozen = ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"]
        var finals: [String: Tensors] = [:]
        for (name, np, flags) in [("np1", nil, []), ("shared-memory", 2, []),
                                  ("mpi", 2, ["--set", "distributed.shared_memory=false"]),
                                  ("allreduce", 2, ["--set", "distributed.sharded_update=false"])] as [(String, Int?, [String])] {
            let run = path("finetune-\(name)")
            try train(np: np, config: config, runDirectory: run, flags)
            let final = try readTensors(run + "/model.safetensors")
            finals[name] = final
            for tensor in frozen {
                XCTAssertEqual(final[tensor], start[tensor], "\(name): frozen \(tensor) changed")
            }
            XCTAssertNotEqual(final["3.weight"], start["3.weight"], "\(name): the trainable layers trained")
            for epoch in 1...3 {
                let tensors = try readTensors(String(format: "%@/checkpoints/epoch-%04d.safetensors", run, epoch))
                let kernel = try XCTUnwrap(tensors["3.weight"]?.floats()), bias = try XCTUnwrap(tensors["3.bias"]?.floats())
                for unit in 0..<8 {
                    let norm = kernel[unit * 12..<(unit + 1) * 12].reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                    XCTAssertLessThanOrEqual(norm, 0.4 * (1 + 1e-5), "\(name) epoch \(epoch): unit \(unit) breaks max_norm")
                }
                XCTAssertTrue(bias.allSatisfy { $0 >= 0 }, "\(name) epoch \(epoch): bias breaks non_neg: \(bias)")
                // Frozen tensors hold no optimizer state: the moments cover the trainable ones.
                XCTAssertEqual(tensors["optimizer.first_moment"]?.shape, [12 * 8 + 8 + 8 * 2 + 2], "\(name)")
            }
        }
        for name in ["shared-memory", "mpi", "allreduce"] {
            assertTensorsClose(finals["np1"]!, finals[name]!, tolerance: 1e-5, "np=2 \(name) vs np=1")
        }

        // Stopped after 2 epochs and resumed: the moments of the trainable prefix come back,
        // and the run ends bit-identical to the straight one.
        let resumed = path("finetune-resumed")
        try train(np: 2, config: config, runDirectory: resumed, ["--set", "training.epochs=2"])
        try train(np: 2, config: config, runDirectory: resumed, ["--resume"])
        XCTAssertEqual(try readTensors(resumed + "/model.safetensors"), finals["shared-memory"]!, "2 + 1 epochs vs 3 with frozen layers")
    }

    func testSummaryCountsFrozenParametersAsNonTrainable() throws {
        let config = try writeConfig("summary.yaml", Self.yaml(initWeights: "unused.safetensors"))
        let result = try runDDP(np: nil, ["summary", config])
        XCTAssertEqual(result.status, 0, result.tail)
        // Trainable: 12·8 + 8 + 8·2 + 2 = 122; non-trainable: 2·12 + 12 + 2·12 (frozen) + 2·12 (running statistics).
        XCTAssertTrue(result.output.contains("Trainable params: 122 "), result.output)
        XCTAssertTrue(result.output.contains("Non-trainable params: 84 "), result.output)
    }
}
