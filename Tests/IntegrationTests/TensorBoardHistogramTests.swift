import DDPCore
import Foundation
import XCTest

/// `logging.histograms` under a real `mpirun`, read back by TensorBoard's own EventAccumulator:
/// every epoch has a weight and a gradient histogram of every trainable tensor (none of
/// BatchNorm's running statistics), the last epoch's weights are model.safetensors', and 2
/// ranks (through shared memory, and through MPI_Gather of the reduce-scatter's blocks) log
/// the gradient of one process.
final class TensorBoardHistogramTests: IntegrationTestCase {
    /// 192 training samples in batches of 24: 8 steps an epoch. Adam without penalties: on 2
    /// ranks through shared memory the reduced gradient is summed inside the update, never
    /// stored, so the gather sums it first.
    static let yaml = """
        seed: 5
        data:
          train: {format: moons, samples: 240, noise: 0.2}
          validation_split: 0.2
        model:
          inputs: 2
          layers:
            - {type: dense, units: 16, use_bias: false}
            - {type: batchnorm}
            - {type: activation, fn: relu}
            - {type: dense, units: 2}
        loss: cross_entropy
        optimizer: {type: adam, lr: 0.01}
        training: {epochs: 2, batch_size: 24}
        checkpoint: {every_epochs: 0, keep: 1}
        logging: {histograms: true}
        """

    /// One histogram as TensorBoard read it.
    struct Histogram {
        var step: Int
        var minimum, maximum, count, sum, sumOfSquares, bucketTotal: Double
    }

    /// `$DDP_PYTHON`, else the environment .ci/run keeps; skips without one.
    private func python() throws -> String {
        let explicit = ProcessInfo.processInfo.environment["DDP_PYTHON"].flatMap { $0.isEmpty ? nil : $0 }
        let python = explicit ?? "/var/cache/ddp-python/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            if explicit != nil { XCTFail("DDP_PYTHON=\(python) is not executable") }
            throw XCTSkip("no Python with tensorboard at \(python); run .ci/run once or set DDP_PYTHON")
        }
        return python
    }

    /// {tag: its histograms by step}, as EventAccumulator keeps them with no sampling. The
    /// numbers travel as Python's repr, which `Double(_:)` reads back exactly (JSONSerialization's
    /// numbers may be off in the last bit).
    private func histograms(_ run: String) throws -> [String: [Histogram]] {
        let script = """
            import json, sys
            from tensorboard.backend.event_processing import event_accumulator as ea
            accumulator = ea.EventAccumulator(sys.argv[1], size_guidance={ea.HISTOGRAMS: 0})
            accumulator.Reload()
            print(json.dumps({tag: [[repr(float(v)) for v in (e.step, h.min, h.max, h.num, h.sum, h.sum_squares, sum(h.bucket))]
                                    for e in accumulator.Histograms(tag) for h in [e.histogram_value]]
                              for tag in accumulator.Tags()[ea.HISTOGRAMS]}))
            """
        let (status, output) = try runPython(try python(), ["-c", script, run])
        XCTAssertEqual(status, 0, output)
        let line = try XCTUnwrap(output.split(separator: "\n").last, output)
        let table = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: [[String]]], output)
        return try table.mapValues { rows in
            try rows.map { row in
                let v = try row.map { try XCTUnwrap(Double($0), $0) }
                return Histogram(step: Int(v[0]), minimum: v[1], maximum: v[2], count: v[3], sum: v[4], sumOfSquares: v[5], bucketTotal: v[6])
            }
        }
    }

    func testEveryEpochHasWeightAndGradientHistogramsTheSameAtOneAndTwoRanks() throws {
        let config = try writeConfig("histograms.yaml", Self.yaml)
        let tensors = try ParameterLayout(config: try TrainingConfig.parse(yaml: Self.yaml).model).trainableTensors.map { ($0.name, $0.count) }
        XCTAssertEqual(tensors.map(\.0), ["0.weight", "1.weight", "1.bias", "3.weight", "3.bias"])
        let runs = [path("np1"), path("np2"), path("np2-mpi")]
        try train(np: nil, config: config, runDirectory: runs[0])
        try train(np: 2, config: config, runDirectory: runs[1])
        try train(np: 2, config: config, runDirectory: runs[2], ["--set", "distributed.shared_memory=false"])
        let logged = try runs.map(histograms)

        for (run, histograms) in zip(runs, logged) {
            XCTAssertEqual(Set(histograms.keys), Set(tensors.flatMap { ["weights/\($0.0)", "gradients/\($0.0)"] }),
                           "\(run): one weight and one gradient histogram per trainable tensor, no running statistics")
            for (tag, series) in histograms {
                let count = Double(tensors.first { tag.hasSuffix("/" + $0.0) }?.1 ?? -1)
                XCTAssertEqual(series.map(\.step), [1, 2], "\(run): \(tag) at each epoch")
                for histogram in series {
                    XCTAssertEqual(histogram.count, count, "\(run): \(tag) holds every element")
                    XCTAssertEqual(histogram.bucketTotal, count, "\(run): \(tag)'s buckets hold every element")
                    XCTAssertLessThan(histogram.minimum, histogram.maximum, "\(run): \(tag) is not constant")
                }
            }
            // The last epoch's weights are the final model's (no restore_best_weights here).
            let saved = try readTensors(run + "/model.safetensors")
            for (name, _) in tensors {
                let values = try XCTUnwrap(saved[name]?.floats(), name).map(Double.init)
                let last = try XCTUnwrap(histograms["weights/" + name]?.last, name)
                XCTAssertEqual(last.minimum, values.min())
                XCTAssertEqual(last.maximum, values.max())
                XCTAssertEqual(last.sum, values.reduce(0, +), accuracy: 1e-12 * Double(values.count), "\(run): \(name)'s sum")
            }
        }

        // N ranks log one process's gradient of the global batch: sums agree to rounding, on the
        // scale of the gradient's L2 norm (a sum may cancel to near zero).
        for (run, histograms) in zip(runs.dropFirst(), logged.dropFirst()) {
            for (tag, series) in logged[0] {
                for (reference, distributed) in zip(series, histograms[tag] ?? []) {
                    let scale = (reference.count * reference.sumOfSquares).squareRoot()
                    XCTAssertEqual(distributed.sum, reference.sum, accuracy: 1e-4 * scale, "\(run): \(tag) at epoch \(reference.step)")
                    XCTAssertEqual(distributed.sumOfSquares, reference.sumOfSquares, accuracy: 1e-4 * reference.sumOfSquares,
                                   "\(run): \(tag) at epoch \(reference.step)")
                }
            }
        }
    }
}
