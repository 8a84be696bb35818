import Foundation
import XCTest
@testable import DDPCore

/// Whole training runs on 1, 2 and 4 ranks as threads of this process (`ThreadCommunicator`):
/// the sync strategies against each other, SyncBatchNorm, and rank 0's broadcast decisions,
/// without mpirun. The mpirun tests (IntegrationTests) keep what only real processes show.
final class ThreadCommunicatorTests: XCTestCase {
    /// SGD, so a different summation order moves the weights by rounding only (Adam turns
    /// near-zero gradients' rounding into full-size steps).
    private static let yaml = """
        seed: 5
        data:
          train: {format: moons, samples: 96, noise: 0.2}
          validation: {format: moons, samples: 64, noise: 0.2, seed: 77}
          normalize: standardize
        model:
          inputs: 2
          layers:
            - {type: dense, units: 24, activation: relu, kernel_regularizer: {l2: 0.001}}
            - {type: dense, units: 12, activation: relu}
            - {type: dense, units: 1}
        loss: {type: binary_crossentropy, from_logits: true}
        optimizer: {type: sgd, lr: 0.1, momentum: 0.9}
        training: {epochs: 4, batch_size: 16, shuffle: true}
        checkpoint: {every_epochs: 0, keep: 1}
        logging: {tensorboard: false}
        """

    private struct RankResult: Sendable {
        var parameters: [Float]
        var state: [Float]
        var outcome: TrainingOutcomeSummary
    }

    private struct TrainingOutcomeSummary: Sendable, Equatable {
        var epochsRun: Int
        var reason: String
        var bestEpoch: Int
        var losses: [Double]
    }

    /// Trains `yaml` on `ranks` threads; returns every rank's final parameters, BatchNorm
    /// state and outcome.
    private func train(ranks: Int, overrides: [String] = [], yaml: String = yaml) throws -> [RankResult] {
        let config = try TrainingConfig.parse(yaml: yaml, overrides: overrides)
        let directory = NSTemporaryDirectory() + "ddp-inprocess-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let results = Results<RankResult>(count: ranks)
        try ThreadCommunicator.run(ranks: ranks) { communicator in
            var options = TrainOptions(runDirectory: directory)
            options.quiet = true
            let trainer = try Trainer(config: config, data: try communicator.loadData(config: config), communicator: communicator,
                                      options: options)
            let outcome = try trainer.run()
            results.set(communicator.rank, RankResult(parameters: Array(trainer.network.parameters), state: Array(trainer.network.state),
                                                      outcome: .init(epochsRun: outcome.end.epochsRun, reason: outcome.end.reason,
                                                                     bestEpoch: outcome.end.bestEpoch, losses: outcome.epochs.map { $0.loss ?? .nan })))
        }
        return try results.all()
    }

    /// Trains `overrides` on one process and on each rank count of `ranks`: every rank of each
    /// run holds one process's model (within 1e-5) and reports its epoch losses. Returns the
    /// one-process result.
    @discardableResult
    private func assertFollowsOneProcess(_ overrides: [String], ranks: [Int], line: UInt = #line) throws -> [RankResult] {
        let single = try train(ranks: 1, overrides: overrides)
        for count in ranks {
            let run = try train(ranks: count, overrides: overrides)
            assertClose(run[0].parameters, single[0].parameters, relative: 1e-5, "np=\(count) against np=1", line: line)
            XCTAssertEqual(run[count - 1].parameters, run[0].parameters, "np=\(count): every rank holds the same model", line: line)
            for (loss, reference) in zip(run[0].outcome.losses, single[0].outcome.losses) {
                XCTAssertEqual(loss, reference, accuracy: 1e-5 * max(1, abs(reference)), "np=\(count): epoch loss", line: line)
            }
        }
        return single
    }

    private func assertClose(_ a: [Float], _ b: [Float], relative: Float, _ message: String, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, message, line: line)
        let scale = max(a.map(abs).max() ?? 0, 1e-6)
        let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst / scale, relative, "\(message): largest difference \(worst) (scale \(scale))", line: line)
    }

    /// Every rank ends with the same model; the sharded update (through shared memory, and
    /// through the reduce-scatter and allgather) gives the allreduce's bits, because both add
    /// the ranks' gradients in rank order; and 2 or 4 ranks train the model of one process with
    /// the same global batch, to rounding.
    func testShardedAndAllreduceSyncsAgreeAtOneTwoAndFourRanks() throws {
        let single = try train(ranks: 1)
        XCTAssertEqual(single[0].outcome.epochsRun, 4)
        for ranks in [2, 4] {
            let allreduce = try train(ranks: ranks, overrides: ["distributed.sharded_update=false"])
            let sharedMemory = try train(ranks: ranks)
            let collectives = try train(ranks: ranks, overrides: ["distributed.shared_memory=false", "distributed.bucket_kb=1"])
            for run in [allreduce, sharedMemory, collectives] {
                for rank in run.indices { XCTAssertEqual(run[rank].parameters, run[0].parameters, "np=\(ranks): rank \(rank)'s model") }
            }
            XCTAssertEqual(sharedMemory[0].parameters, allreduce[0].parameters, "np=\(ranks): sharded through shared memory")
            XCTAssertEqual(collectives[0].parameters, allreduce[0].parameters, "np=\(ranks): sharded through reduce-scatter buckets")
            XCTAssertEqual(allreduce[0].outcome.losses.count, 4)
            assertClose(allreduce[0].parameters, single[0].parameters, relative: 1e-5, "np=\(ranks) against np=1")
            for (loss, reference) in zip(allreduce[0].outcome.losses, single[0].outcome.losses) {
                XCTAssertEqual(loss, reference, accuracy: 1e-5 * max(1, abs(reference)), "np=\(ranks): epoch loss")
            }
        }
    }

    /// SyncBatchNorm: N ranks normalize with the global batch's statistics, so the running
    /// statistics and the weights follow one process's.
    func testSyncBatchNormFollowsOneProcessAtTwoAndFourRanks() throws {
        let withNorm = Self.yaml.replacingOccurrences(
            of: "- {type: dense, units: 24, activation: relu, kernel_regularizer: {l2: 0.001}}",
            with: "- {type: dense, units: 24, use_bias: false}\n    - {type: batchnorm}\n    - {type: activation, fn: relu}")
        XCTAssertNotEqual(withNorm, Self.yaml)
        let single = try train(ranks: 1, yaml: withNorm)
        XCTAssertEqual(single[0].state.count, 48, "running mean and variance of 24 features")
        for ranks in [2, 4] {
            let run = try train(ranks: ranks, yaml: withNorm)
            for rank in run.indices { XCTAssertEqual(run[rank].state, run[0].state, "np=\(ranks): rank \(rank)'s running statistics") }
            assertClose(run[0].state, single[0].state, relative: 1e-5, "np=\(ranks): running statistics against np=1")
            assertClose(run[0].parameters, single[0].parameters, relative: 1e-4, "np=\(ranks): weights against np=1")
        }
    }

    /// Rank 0 decides early stopping and broadcasts it: every rank stops after the same epoch,
    /// the one a single process stops after.
    func testEveryRankStopsEarlyWhereOneProcessDoes() throws {
        let overrides = ["training.epochs=40", "optimizer.lr=0.5", "early_stopping.monitor=val_loss", "early_stopping.patience=1",
                         "early_stopping.restore_best_weights=true"]
        let single = try train(ranks: 1, overrides: overrides)
        XCTAssertEqual(single[0].outcome.reason, "early_stopping")
        XCTAssertLessThan(single[0].outcome.epochsRun, 40)
        for ranks in [2, 4] {
            let run = try train(ranks: ranks, overrides: overrides)
            for rank in run.indices {
                XCTAssertEqual(run[rank].outcome, run[0].outcome, "np=\(ranks): rank \(rank)'s outcome")
                XCTAssertEqual(run[rank].parameters, run[0].parameters, "np=\(ranks): rank \(rank)'s restored weights")
            }
            XCTAssertEqual(run[0].outcome.epochsRun, single[0].outcome.epochsRun, "np=\(ranks) stops after the epoch np=1 does")
            XCTAssertEqual(run[0].outcome.bestEpoch, single[0].outcome.bestEpoch)
        }
    }

    /// A CNN (conv, BatchNorm over channels, spatial dropout, max pooling, flatten, dropout,
    /// dense) on 6×6 images: 2 and 4 ranks train one process's model, dropout masks and all,
    /// since masks are keyed by sample and channel, not by rank or batch position.
    func testConvolutionalNetworkFollowsOneProcessAtTwoAndFourRanks() throws {
        let directory = NSTemporaryDirectory() + "ddp-cnn-data-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let yaml = try Self.convolutionalYAML(directory: directory)
        let single = try train(ranks: 1, yaml: yaml)
        XCTAssertEqual(single[0].state.count, 8, "running mean and variance of 4 channels")
        for ranks in [2, 4] {
            let run = try train(ranks: ranks, yaml: yaml)
            for rank in run.indices { XCTAssertEqual(run[rank].parameters, run[0].parameters, "np=\(ranks): rank \(rank)'s model") }
            assertClose(run[0].parameters, single[0].parameters, relative: 1e-5, "np=\(ranks): weights against np=1")
            assertClose(run[0].state, single[0].state, relative: 1e-5, "np=\(ranks): running statistics against np=1")
            for (loss, reference) in zip(run[0].outcome.losses, single[0].outcome.losses) {
                XCTAssertEqual(loss, reference, accuracy: 1e-5 * max(1, abs(reference)), "np=\(ranks): epoch loss")
            }
        }
        XCTAssertNotEqual(single[0].outcome.losses.first, single[0].outcome.losses.last, "it trained")
    }

    /// A CNN config (conv, BatchNorm over channels, spatial dropout, max pooling, a strided
    /// conv, flatten, dropout, dense) over 96 random 6×6 images written to `directory` as npy:
    /// is the image's left half brighter than its right half?
    private static func convolutionalYAML(directory: String) throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var random = TestRandom(seed: 31)
        let samples = 96, pixels = 36
        let features = random.array(samples * pixels, -1, 1)
        // The label: is the image's left half brighter than its right half?
        let labels: [Float] = (0..<samples).map { n in
            let image = features[n * pixels..<(n + 1) * pixels]
            let left = image.enumerated().filter { $0.offset % 6 < 3 }.map(\.element).reduce(0, +)
            return left > image.reduce(0, +) - left ? 1 : 0
        }
        func save(_ name: String, _ values: [Float], _ shape: [Int]) throws {
            let bytes = values.withUnsafeBytes { Array($0) }
            try Data(NPYFile.encode(descr: "<f4", shape: shape, values: bytes)).write(to: URL(fileURLWithPath: "\(directory)/\(name)"))
        }
        try save("x.npy", features, [samples, pixels])
        try save("y.npy", labels, [samples])
        return """
            seed: 9
            data:
              train: {format: npy, features: \(directory)/x.npy, labels: \(directory)/y.npy}
              image_shape: [6, 6, 1]
              normalize: none
            model:
              layers:
                - {type: conv2d, filters: 4, kernel_size: 3, padding: same, use_bias: false}
                - {type: batchnorm}
                - {type: activation, fn: relu}
                - {type: spatial_dropout2d, rate: 0.25}
                - {type: max_pooling2d, pool_size: 2}
                - {type: conv2d, filters: 6, kernel_size: 2, strides: 2, padding: same}
                - {type: flatten}
                - {type: dropout, rate: 0.2}
                - {type: dense, units: 2}
            optimizer: {type: sgd, lr: 0.1, momentum: 0.9}
            training: {epochs: 3, batch_size: 16, shuffle: true}
            checkpoint: {every_epochs: 0, keep: 1}
            logging: {tensorboard: false}
            """
    }

    // MARK: The deterministic mode

    /// `distributed.deterministic`: 1, 2, 4 and 8 ranks end with the same bits, parameters,
    /// BatchNorm statistics and epoch losses, with Adam (which turns rounding into steps),
    /// BatchNorm, dropout (fused after the BatchNorm, and on its own), Gaussian noise, shuffling,
    /// an L1 penalty, an activity penalty and clipping, through the node's slots and through the
    /// gathered blocks, with gradient accumulation, and with LAMB and LARS; without the mode
    /// np = 4 differs.
    func testDeterministicModeGivesTheSameBitsAtEveryRankCount() throws {
        let yaml = """
            seed: 11
            data:
              train: {format: moons, samples: 203, noise: 0.2}
              validation: {format: moons, samples: 64, noise: 0.2, seed: 77}
              normalize: standardize
            model:
              inputs: 2
              layers:
                - {type: dense, units: 64, use_bias: false, kernel_regularizer: {l1: 0.0001}}
                - {type: batchnorm}
                - {type: activation, fn: relu}
                - {type: dropout, rate: 0.2}
                - {type: dense, units: 192, activation: tanh, activity_regularizer: {l2: 0.001}}
                - {type: gaussian_noise, stddev: 0.1}
                - {type: dropout, rate: 0.1}
                - {type: dense, units: 2}
            loss: cross_entropy
            optimizer: {type: adam, lr: 0.01, clip_norm: 0.5}
            training: {epochs: 3, batch_size: 24, shuffle: true}
            checkpoint: {every_epochs: 0, keep: 1}
            logging: {tensorboard: false}
            """
        // 13,122 parameters: the sharded blocks (whole chunks of 4,096) cut the 64×192 kernel
        // across 4 ranks, so clipping's chunks and LAMB's and LARS's pieces span ranks.
        let deterministic = ["distributed.deterministic=true"]
        let single = try train(ranks: 1, overrides: deterministic, yaml: yaml)
        XCTAssertEqual(single[0].parameters.count, 13_122)
        for (ranks, extra) in [(2, []), (4, []), (8, []), (4, ["distributed.shared_memory=false"])] {
            let run = try train(ranks: ranks, overrides: deterministic + extra, yaml: yaml)
            for rank in run.indices {
                XCTAssertEqual(run[rank].parameters, single[0].parameters, "np=\(ranks) \(extra): rank \(rank)'s parameters")
                XCTAssertEqual(run[rank].state, single[0].state, "np=\(ranks) \(extra): rank \(rank)'s running statistics")
                XCTAssertEqual(run[rank].outcome, single[0].outcome, "np=\(ranks) \(extra): rank \(rank)'s epoch losses")
            }
        }
        // Accumulated: 3 passes of 24 per step (the last step's last pass short), each shard's
        // passes summed in order before the shards fold.
        let accumulated = deterministic + ["training.accumulate_steps=3"]
        let accumulatedSingle = try train(ranks: 1, overrides: accumulated, yaml: yaml)
        XCTAssertNotEqual(accumulatedSingle[0].parameters, single[0].parameters)
        for ranks in [2, 4, 8] {
            let run = try train(ranks: ranks, overrides: accumulated, yaml: yaml)
            XCTAssertEqual(run[ranks - 1].parameters, accumulatedSingle[0].parameters, "np=\(ranks), accumulated: parameters")
            XCTAssertEqual(run[0].state, accumulatedSingle[0].state, "np=\(ranks), accumulated: running statistics")
            XCTAssertEqual(run[0].outcome, accumulatedSingle[0].outcome, "np=\(ranks), accumulated: epoch losses")
        }
        // LAMB and LARS: their per-tensor norms taken per fixed piece and added in piece order.
        for (optimizer, extra) in [("lamb", ["optimizer.weight_decay=0.01"]), ("lars", ["optimizer.lr=0.5", "optimizer.momentum=0.9"])] {
            let overrides = deterministic + ["optimizer.type=\(optimizer)"] + extra
            let layerwiseSingle = try train(ranks: 1, overrides: overrides, yaml: yaml)
            for ranks in [2, 4] {
                let run = try train(ranks: ranks, overrides: overrides, yaml: yaml)
                XCTAssertEqual(run[ranks - 1].parameters, layerwiseSingle[0].parameters, "np=\(ranks), \(optimizer): parameters")
                XCTAssertEqual(run[0].outcome, layerwiseSingle[0].outcome, "np=\(ranks), \(optimizer): epoch losses")
            }
        }
        let plainSingle = try train(ranks: 1, yaml: yaml), plainFour = try train(ranks: 4, yaml: yaml)
        XCTAssertNotEqual(plainFour[0].parameters, plainSingle[0].parameters, "without the mode np=4 should differ in rounding, or this config shows nothing")
    }

    /// The deterministic mode on the CNN: conv GEMMs per virtual shard, BatchNorm over channels
    /// from the shards' sums, spatial dropout; 2 and 4 ranks give one process's bits.
    func testDeterministicModeGivesTheSameBitsForTheConvolutionalNetwork() throws {
        let directory = NSTemporaryDirectory() + "ddp-cnn-data-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let yaml = try Self.convolutionalYAML(directory: directory)
        let overrides = ["distributed.deterministic=true", "distributed.virtual_shards=4"]
        let single = try train(ranks: 1, overrides: overrides, yaml: yaml)
        for ranks in [2, 4] {
            let run = try train(ranks: ranks, overrides: overrides, yaml: yaml)
            XCTAssertEqual(run[0].parameters, single[0].parameters, "np=\(ranks): parameters")
            XCTAssertEqual(run[ranks - 1].state, single[0].state, "np=\(ranks): running statistics")
            XCTAssertEqual(run[0].outcome, single[0].outcome, "np=\(ranks): epoch losses")
        }
    }

    /// What the mode cannot promise is refused before training, naming the key.
    func testDeterministicModeRefusesWhatItCannotKeepTheSame() throws {
        let cases: [([String], Int, String)] = [
            (["distributed.virtual_shards=4"], 8, "do not split evenly over 8 ranks"),
            (["training.batch_size_per_rank=8"], 1, "training.batch_size_per_rank"),
            (["distributed.sharded_update=false"], 1, "distributed.sharded_update"),
        ]
        for (overrides, ranks, expected) in cases {
            XCTAssertThrowsError(try train(ranks: ranks, overrides: ["distributed.deterministic=true"] + overrides)) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(overrides): \(error)")
            }
        }
        XCTAssertThrowsError(try TrainingConfig.parse(yaml: Self.yaml, overrides: ["distributed.virtual_shards=6"])) { error in
            XCTAssertTrue("\(error)".contains("distributed.virtual_shards: expected a power of two"), "\(error)")
        }
    }

    /// `scale_lr: linear` trains at lr × global batch / base_batch: lr 0.05 tuned for a batch of 8,
    /// at a global batch of 16, is lr 0.1, whether the 16 come from one rank or from 2 ranks of
    /// `batch_size_per_rank: 8`.
    func testLinearScalingRuleFollowsTheGlobalBatch() throws {
        let reference = try train(ranks: 1, overrides: ["optimizer.lr=0.1"])
        let scaled = try train(ranks: 1, overrides: ["optimizer.lr=0.05", "optimizer.scale_lr=linear", "optimizer.base_batch=8"])
        XCTAssertEqual(scaled[0].parameters, reference[0].parameters, "0.05 × 16 / 8 is 0.1 exactly")
        let perRank = try train(ranks: 2, overrides: ["optimizer.lr=0.05", "optimizer.scale_lr=linear", "optimizer.base_batch=8",
                                                      "training.batch_size=null", "training.batch_size_per_rank=8"])
        assertClose(perRank[0].parameters, reference[0].parameters, relative: 1e-5, "np=2 × 8 against np=1 × 16 at lr 0.1")
        let unscaled = try train(ranks: 1, overrides: ["optimizer.lr=0.05"])
        XCTAssertNotEqual(unscaled[0].parameters, reference[0].parameters)
    }

    /// one_cycle cycles the sharded optimizer's momentum on every rank alike: 2 ranks train one
    /// process's model, and the cycle changes it.
    func testOneCycleFollowsOneProcessAtTwoRanks() throws {
        let single = try assertFollowsOneProcess(["schedule={type: one_cycle, max_lr: 0.2}"], ranks: [2])
        let withoutMomentumCycle = try train(ranks: 1, overrides: ["schedule={type: one_cycle, max_lr: 0.2, cycle_momentum: false}"])
        XCTAssertNotEqual(withoutMomentumCycle[0].parameters, single[0].parameters, "the momentum cycle changes the steps")
    }

    /// RMSprop under the sharded update: 2 and 4 ranks train one process's model.
    func testRMSpropFollowsOneProcessAtTwoAndFourRanks() throws {
        let single = try assertFollowsOneProcess(["optimizer={type: rmsprop, lr: 0.003, momentum: 0.5, weight_decay: 0.001}"], ranks: [2, 4])
        XCTAssertNotEqual(single[0].outcome.losses.first, single[0].outcome.losses.last, "it trained")
    }

    /// LAMB and LARS under every sync (the allreduce; the sharded update through shared memory
    /// and through reduce-scatter buckets), their per-tensor norms summed over the ranks: 2 and
    /// 4 ranks train one process's model. LARS with clipping too (its shares are taken before
    /// the clip and scaled after).
    func testLAMBAndLARSFollowOneProcessUnderEverySync() throws {
        for optimizer in ["optimizer={type: lamb, lr: 0.01, weight_decay: 0.01}",
                          "optimizer={type: lars, lr: 2, weight_decay: 0.0005, clip_norm: 0.01}"] {
            let single = try assertFollowsOneProcess([optimizer], ranks: [2, 4])
            try assertFollowsOneProcess([optimizer, "distributed.sharded_update=false"], ranks: [2])
            try assertFollowsOneProcess([optimizer, "distributed.shared_memory=false", "distributed.bucket_kb=1"], ranks: [2])
            XCTAssertLessThan(single[0].outcome.losses.last!, single[0].outcome.losses.first! * 0.9, "\(optimizer): it trained")
        }
        // Without penalties or clipping LAMB sums the ranks' slots as it reads them, never storing
        // the reduced gradient: the bits of the path that stores it (the reduce-scatter's).
        let lamb = ["optimizer={type: lamb, lr: 0.01, weight_decay: 0.01}", "model.layers.0.kernel_regularizer=null"]
        try assertFollowsOneProcess(lamb, ranks: [2])
        XCTAssertEqual(try train(ranks: 2, overrides: lamb)[0].parameters,
                       try train(ranks: 2, overrides: lamb + ["distributed.shared_memory=false"])[0].parameters,
                       "LAMB summing the slots in its first pass against the stored sum")
    }

    /// Gradient accumulation: K micro-batches of b take the step of one batch of K·b on 1 and
    /// 2 ranks, dropout masks included (they are keyed by sample), also where the last step's
    /// last micro-batch is short (96 samples in steps of 3 × 5: its passes have 5 and 1).
    func testAccumulatedMicroBatchesTakeTheStepOfTheWholeBatch() throws {
        let withDropout = Self.yaml.replacingOccurrences(of: "- {type: dense, units: 12, activation: relu}",
                                                         with: "- {type: dense, units: 12, activation: relu}\n    - {type: dropout, rate: 0.3}")
        XCTAssertNotEqual(withDropout, Self.yaml)
        for (micro, steps) in [(4, 4), (5, 3)] {
            let whole = try train(ranks: 1, overrides: ["training.batch_size=\(micro * steps)"], yaml: withDropout)
            for ranks in [1, 2] {
                let accumulated = try train(ranks: ranks, overrides: ["training.batch_size=\(micro)", "training.accumulate_steps=\(steps)"],
                                            yaml: withDropout)
                assertClose(accumulated[0].parameters, whole[0].parameters, relative: 1e-5, "\(steps) × \(micro) at np=\(ranks) against \(micro * steps)")
                XCTAssertEqual(accumulated[ranks - 1].parameters, accumulated[0].parameters, "np=\(ranks): every rank holds the same model")
                for (loss, reference) in zip(accumulated[0].outcome.losses, whole[0].outcome.losses) {
                    XCTAssertEqual(loss, reference, accuracy: 1e-5 * max(1, abs(reference)), "\(steps) × \(micro) at np=\(ranks): epoch loss")
                }
            }
            let unaccumulated = try train(ranks: 1, overrides: ["training.batch_size=\(micro)"], yaml: withDropout)
            XCTAssertNotEqual(unaccumulated[0].parameters, whole[0].parameters, "accumulating changes the steps")
        }
    }

    /// With BatchNorm each micro-batch is normalized by its own statistics (so K × b is not K·b),
    /// and 2 ranks still follow one process with the same micro-batches.
    func testAccumulationWithBatchNormFollowsOneProcess() throws {
        let withNorm = Self.yaml.replacingOccurrences(
            of: "- {type: dense, units: 24, activation: relu, kernel_regularizer: {l2: 0.001}}",
            with: "- {type: dense, units: 24, use_bias: false}\n    - {type: batchnorm}\n    - {type: activation, fn: relu}")
        let accumulate = ["training.batch_size=8", "training.accumulate_steps=2"]
        let single = try train(ranks: 1, overrides: accumulate, yaml: withNorm)
        let run = try train(ranks: 2, overrides: accumulate, yaml: withNorm)
        assertClose(run[0].state, single[0].state, relative: 1e-5, "np=2: running statistics against np=1")
        assertClose(run[0].parameters, single[0].parameters, relative: 1e-4, "np=2: weights against np=1")
        let whole = try train(ranks: 1, overrides: ["training.batch_size=16"], yaml: withNorm)
        XCTAssertNotEqual(whole[0].state, single[0].state, "statistics per micro-batch differ from the whole batch's")
    }

    /// accumulate_steps below 1 is refused, naming the key.
    func testAccumulateStepsBelowOneIsRefused() {
        XCTAssertThrowsError(try TrainingConfig.parse(yaml: Self.yaml, overrides: ["training.accumulate_steps=0"])) { error in
            XCTAssertTrue("\(error)".contains("training.accumulate_steps"), "\(error)")
        }
    }

    /// Class weights: every rank sums the global batch's w_y itself, so 2 and 4 ranks train
    /// one process's model, and the weights change it.
    func testClassWeightsFollowOneProcessAtTwoAndFourRanks() throws {
        let single = try assertFollowsOneProcess(["loss={type: binary_crossentropy, from_logits: true, class_weight: {0: 0.5, 1: 3.0}}"],
                                                 ranks: [2, 4])
        let unweighted = try train(ranks: 1)
        XCTAssertNotEqual(unweighted[0].parameters, single[0].parameters, "the weights change the model")
        // Weighted, smoothed cross-entropy over two logits, the same way.
        let categorical = ["model.layers.2.units=2", "loss={type: cross_entropy, label_smoothing: 0.1, class_weight: {0: 0.5, 1: 3.0}}"]
        try assertFollowsOneProcess(categorical, ranks: [2])
    }

    /// one_cycle whose rise would be under one step is refused before training, naming the key.
    func testOneCycleWithoutARiseIsRefused() {
        XCTAssertThrowsError(try train(ranks: 1, overrides: ["schedule={type: one_cycle, pct_start: 0.001}"])) { error in
            XCTAssertTrue("\(error)".contains("schedule.pct_start"), "\(error)")
        }
    }

    /// A rank that fails stops the others at their next collective instead of leaving them
    /// waiting, and the error names it.
    func testOneRankFailingStopsTheOthers() throws {
        XCTAssertThrowsError(try ThreadCommunicator.run(ranks: 3) { communicator in
            if communicator.rank == 1 { throw DDPError(.data, "rank 1's data is damaged") }
            var values: [Float] = [1, 2]
            try values.withUnsafeMutableBufferPointer { try communicator.allreduceSum($0) }
            try communicator.barrier()
        }) { error in
            XCTAssertTrue("\(error)".contains("rank 1's data is damaged"), "\(error)")
        }
    }
}

/// Each rank's result, written from its thread.
final class Results<Value: Sendable>: @unchecked Sendable {
    private var values: [Value?]
    private let lock = NSLock()

    init(count: Int) { values = Array(repeating: nil, count: count) }

    func set(_ index: Int, _ value: Value) {
        lock.lock()
        values[index] = value
        lock.unlock()
    }

    func all() throws -> [Value] {
        lock.lock()
        defer { lock.unlock() }
        return try values.enumerated().map { index, value in try XCTUnwrap(value, "rank \(index) returned nothing") }
    }
}
