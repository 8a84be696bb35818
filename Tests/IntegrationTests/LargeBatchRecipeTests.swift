import DDPCore
import Foundation
import XCTest

/// The large-batch recipes under a real `mpirun`: LAMB and LARS (their per-tensor norms summed
/// over the ranks of the sharded update), gradient accumulation and class weights train one
/// process's model on 2 and 4 ranks.
final class LargeBatchRecipeTests: IntegrationTestCase {
    /// 243 moons samples, 25 % held out: 182 training samples in steps of 2 × 12 (the last one
    /// 14: passes of 12 and 2, so on 4 ranks two ranks hold nothing in the last pass), dropout
    /// keyed by sample, weighted classes, 5 epochs.
    static func yaml(optimizer: String) -> String {
        """
        seed: 11
        data:
          train: {format: moons, samples: 243, noise: 0.2}
          validation_split: 0.25
          normalize: standardize
        model:
          inputs: 2
          layers:
            - {type: dense, units: 32, activation: relu}
            - {type: dropout, rate: 0.2}
            - {type: dense, units: 16, activation: relu}
            - {type: dense, units: 2}
        loss: {type: cross_entropy, class_weight: {0: 1.0, 1: 2.5}}
        optimizer: \(optimizer)
        schedule: {type: cosine, warmup_steps: 4}
        training: {epochs: 5, batch_size: 12, accumulate_steps: 2}
        checkpoint: {every_epochs: 0, keep: 1}
        logging: {tensorboard: false}
        """
    }

    func testLAMBAndLARSWithAccumulationAndClassWeightsOnOneTwoAndFourRanks() throws {
        for (name, optimizer) in [("lamb", "{type: lamb, lr: 0.02, weight_decay: 0.01}"),
                                  ("lars", "{type: lars, lr: 1, weight_decay: 0.0005}")] {
            let config = try writeConfig("\(name).yaml", Self.yaml(optimizer: optimizer))
            var models: [Int: Tensors] = [:]
            var losses: [Int: [Double?]] = [:]
            for np in [1, 2, 4] {
                let run = path("\(name)-np\(np)")
                try train(np: np == 1 ? nil : np, config: config, runDirectory: run)
                models[np] = try readTensors(run + "/model.safetensors")
                let metrics = Metrics(runDirectory: run)
                XCTAssertEqual(metrics.endInt("global_batch"), 24, "\(name) np=\(np): 2 accumulated micro-batches of 12")
                losses[np] = metrics.values("val_loss")
            }
            for np in [2, 4] {
                assertTensorsClose(models[1]!, models[np]!, tolerance: 1e-5, "\(name): model.safetensors np=\(np) vs np=1")
                assertSeriesClose(losses[1]!, losses[np]!, tolerance: 1e-5, "\(name): val_loss np=\(np) vs np=1")
            }
            // Chance on two classes is a loss of ln 2 = 0.69.
            let validation = losses[1]!.compactMap { $0 }
            XCTAssertLessThan(validation.last ?? 1, 0.45, "\(name) did not learn: \(validation)")
        }
    }
}
