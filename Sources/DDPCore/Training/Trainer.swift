import Foundation
import _CPreemption

/// Where a run writes, and how it talks.
public struct TrainOptions: Sendable {
    public var runDirectory: String
    public var resume = false
    /// No per-epoch lines and no progress display (metrics.jsonl is still written).
    public var quiet = false
    /// A fresh run may replace an earlier run in the same directory (else it refuses).
    public var overwrite = false
    /// Write RUN_DIR/trace.json: every rank's step timeline (see `TraceRecorder`).
    public var trace = false
    public init(runDirectory: String) { self.runDirectory = runDirectory }
}

/// How a run ended.
public struct TrainingOutcome: Sendable {
    public var epochsRun: Int
    public var reason: String
    public var monitor: String
    public var bestEpoch: Int          // 1-based
    public var bestValue: Double
    public var testLoss: Double?
    public var testAccuracy: Double?
    public var records: [EpochRecord]
}

/// The training loop every rank runs. One step:
///
///     gather this rank's rows → forward → loss (gradient scaled by 1/global batch) → backward
///     → gradient sync: the mean gradient (whole, or this rank's slice) and the step's totals
///     → weight penalties → clip → optimizer (→ allgather of the slices)
///
/// After each epoch: validation (sharded, one allreduce), then rank 0 decides early stopping
/// (and reduce_on_plateau's next lr) and broadcasts the decision, so every rank leaves the loop
/// after the same epoch and trains the next with the same lr. Rank 0
/// alone writes metrics, weights and checkpoints.
public final class Trainer {
    public let config: TrainingConfig
    public let data: RunData
    public let communicator: Communicator
    public let options: TrainOptions
    public let network: Network
    /// Allreduce, or the sharded update (ZeRO-1) whenever np > 1: see `GradientSync`.
    public let sync: GradientSync
    public var optimizer: Optimizer { sync.optimizer }
    public let plan: BatchPlan
    let context: StepContext
    let evaluator: Evaluator
    /// `data.augment`, applied to each gathered training batch; nil without one.
    private let augmentation: Augmentation?
    private let labels: UnsafeMutableBufferPointer<Float>
    private let order: UnsafeMutableBufferPointer<Int32>
    /// Decides improvements (and stopping, when `early_stopping` is configured).
    private var monitor: EarlyStopping
    private let earlyStoppingEnabled: Bool
    /// `schedule: {type: reduce_on_plateau}`: holds the lr each epoch trains with; nil otherwise.
    private var plateau: ReduceLROnPlateau?
    private let snapshot: WeightsSnapshot?
    private var startEpoch = 0
    /// Set by a resume from a checkpoint written mid-epoch (on a preemption signal).
    private var resumePartial: CheckpointState.PartialEpoch?
    private var globalStep = 0
    private let checkpoints: CheckpointStore
    private let metrics: MetricsLog
    private var lastCheckpoint: String?
    private let console: Console
    /// Set with `TrainOptions.trace`; every hook below is a nil check otherwise.
    private var trace: TraceRecorder?
    private var tensorBoard: TensorBoardWriter?
    /// `logging.tensorboard_every_steps` > 0, on rank 0.
    private var stepScalars: TensorBoardStepWriter?

    public init(config: TrainingConfig, data: RunData, communicator: Communicator, options: TrainOptions) throws {
        self.config = config
        self.data = data
        self.communicator = communicator
        self.options = options
        (network, sync) = try makeNetworkAndSync(config: config, communicator: communicator)
        plan = try BatchPlan(sampleCount: data.train.count, loop: config.training,
                             ranks: communicator.size, rank: communicator.rank)
        if network.hasBatchNorm {
            let smallest = plan.globalCount(step: plan.stepsPerEpoch - 1)
            if smallest < 2 {
                throw DDPError(.config, "the last batch of each epoch has \(smallest) sample (\(data.train.count) samples, batch \(plan.globalBatch)); BatchNorm needs at least 2 in training: set training.drop_last: true or change training.batch_size")
            }
        }
        context = StepContext(communicator: communicator, maxBatch: max(plan.maxLocalBatch, Evaluator.chunk))
        context.seed = config.seed
        network.reserve(maxBatch: plan.maxLocalBatch)
        evaluator = Evaluator(network: network, loss: config.loss, context: context)
        augmentation = try Augmentation(config: config, data: data)
        labels = .allocate(capacity: max(network.maxBatch, 1))
        labels.initialize(repeating: 0)
        order = .allocate(capacity: data.train.count)
        order.initialize(repeating: 0)
        if let early = config.earlyStopping {
            monitor = try EarlyStopping(config: early)
            earlyStoppingEnabled = true
        } else {
            var tracker = EarlyStoppingConfig()
            tracker.monitor = data.validation == nil ? "loss" : "val_loss"
            tracker.patience = Int.max
            monitor = try EarlyStopping(config: tracker)
            earlyStoppingEnabled = false
        }
        if case let .reduceOnPlateau(plateauConfig) = config.schedule.kind {
            plateau = ReduceLROnPlateau(config: plateauConfig, learningRate: config.optimizer.learningRate)
        }
        snapshot = monitor.config.restoreBestWeights ? WeightsSnapshot(network: network) : nil
        checkpoints = CheckpointStore(runDirectory: options.runDirectory)
        metrics = MetricsLog(path: options.runDirectory + "/metrics.jsonl")
        console = Console(enabled: communicator.isRoot && !options.quiet, plainProgressSeconds: config.logging.progressSeconds)
    }

    deinit {
        labels.deallocate()
        order.deallocate()
    }

    // MARK: The run

    /// Trains to the end. An error may be thrown on one rank only (a failed write on rank 0,
    /// say) while the others wait in a collective, so a caller under MPI must end the job on
    /// any error (the CLI calls MPI_Abort).
    public func run() throws -> TrainingOutcome {
        if communicator.isRoot {
            if !options.resume {
                try RunDirectory.prepareFresh(options.runDirectory, overwrite: options.overwrite, remove: true)
            }
            try RunDirectory.create(options.runDirectory)
        }
        if options.resume {
            try resumeFromCheckpoint()
        } else {
            try initializeWeights()
            if communicator.isRoot { try AtomicFile.write("", to: metrics.path) }
        }
        // Only once a resume is accepted: a refused one leaves the run's config as it was.
        if communicator.isRoot { try AtomicFile.write(config.resolvedYAML, to: options.runDirectory + "/config.yaml") }
        if options.trace {
            trace = TraceRecorder(path: options.runDirectory + "/trace.json", spansPerEpoch: plan.stepsPerEpoch * 32 + 256)
            (communicator as? MPICommunicator)?.trace = trace
        }
        if communicator.isRoot && config.logging.tensorboard {
            tensorBoard = try TensorBoardWriter(directory: options.runDirectory, resumingAfter: options.resume ? startEpoch : nil)
            if config.logging.tensorboardEverySteps > 0 {
                stepScalars = try TensorBoardStepWriter(runDirectory: options.runDirectory, everySteps: config.logging.tensorboardEverySteps,
                                                        resumingAfterStep: options.resume ? globalStep : nil)
            }
        }
        let totalEpochs = config.training.epochs
        var records: [EpochRecord] = []
        var reason = "completed"
        let runStart = Date()
        var epoch = startEpoch
        if earlyStoppingEnabled, let stopped = monitor.stoppedEpoch {
            // The checkpointed run had already stopped early: resuming finishes it, trains no more.
            reason = "early_stopping"
            epoch = totalEpochs
            console.line("The run stopped early at epoch \(stopped + 1); nothing left to train.")
        }
        while epoch < totalEpochs {
            let epochStart = Date()
            let continuing = resumePartial
            resumePartial = nil
            var record: EpochRecord
            switch try trainEpoch(epoch, continuing: continuing) {
            case .completed(let completed): record = completed
            case .preempted(let partial):
                return try preempt(epoch: epoch, partial: partial, records: records)
            }
            if let validation = data.validation {
                let validationStart = trace?.now() ?? 0
                let result = try evaluator.evaluate(validation, transform: data.transform)
                record.validationLoss = result.loss
                record.validationAccuracy = result.accuracy
                trace?.record(.validation, since: validationStart)
            }
            record.seconds = Date().timeIntervalSince(epochStart) + (continuing?.seconds ?? 0)
            let (decision, reducedLearningRate) = try decide(epoch: epoch, record: record)
            records.append(record)
            let every = config.checkpoint.everyEpochs
            let checkpointDue = decision.improved || (every > 0 && (epoch + 1) % every == 0) || decision.stop || epoch + 1 == totalEpochs
            // Collective: under the sharded update the moments live in slices on every rank.
            let checkpointStart = trace?.now() ?? 0
            let moments = checkpointDue ? try sync.gatherOptimizerState() : nil
            if communicator.isRoot {
                console.endProgress()
                console.line(record.consoleLine(totalEpochs: totalEpochs))
                if let reducedLearningRate {
                    console.line("Epoch \(epoch + 1): ReduceLROnPlateau reducing learning rate to \(reducedLearningRate).")
                }
                try metrics.append(record.json)
                try tensorBoard?.append(record)
                if decision.improved { try network.saveWeights(to: options.runDirectory + "/best.safetensors", metadata: weightsMetadata) }
                if checkpointDue, let moments { try saveCheckpoint(epochsCompleted: epoch + 1, moments: moments) }
            }
            if checkpointDue { trace?.record(.checkpoint, since: checkpointStart) }
            try trace?.flush(communicator)
            // Every rank knows the path, so any rank's error message can name it.
            if checkpointDue { lastCheckpoint = checkpoints.statePath(epoch: epoch + 1) }
            epoch += 1
            if decision.stop {
                reason = "early_stopping"
                console.line("Epoch \(epoch): early stopping")
                break
            }
        }
        if let snapshot, monitor.hasSnapshot {
            snapshot.restore(into: network)
            console.line("Restoring model weights from the end of the best epoch: \(monitor.bestEpoch + 1).")
        }
        var outcome = TrainingOutcome(epochsRun: epoch, reason: reason, monitor: monitor.config.monitor,
                                      bestEpoch: monitor.bestEpoch + 1, bestValue: monitor.best,
                                      testLoss: nil, testAccuracy: nil, records: records)
        if let test = data.test {
            let result = try evaluator.evaluate(test, transform: data.transform)
            outcome.testLoss = result.loss
            outcome.testAccuracy = result.accuracy
        }
        if communicator.isRoot {
            try network.saveWeights(to: options.runDirectory + "/model.safetensors", metadata: weightsMetadata)
            let end = EndMetrics(reason: reason, epochsRun: epoch, bestEpoch: outcome.bestEpoch, monitor: outcome.monitor,
                                 bestValue: outcome.bestValue, testLoss: outcome.testLoss, testAccuracy: outcome.testAccuracy,
                                 ranks: communicator.size, globalBatch: plan.globalBatch, seconds: Date().timeIntervalSince(runStart),
                                 blasCore: BLASKernels.current, blasCoreChosenBy: BLASKernels.statusHere?.chosenBy.rawValue)
            try metrics.append(MetricsLog.encode(end))
            if let loss = outcome.testLoss {
                console.line(String(format: "test_loss: %.4f", loss) + (outcome.testAccuracy.map { String(format: " - test_accuracy: %.4f", $0) } ?? ""))
            }
        }
        try trace?.close(communicator)
        try communicator.barrier()
        return outcome
    }

    // MARK: One epoch

    enum EpochResult {
        case completed(EpochRecord)
        /// A preemption signal reached some rank: every rank stopped after this many steps.
        case preempted(CheckpointState.PartialEpoch)
    }

    /// Trains epoch `epoch` from its first step, or from where `continuing` left it.
    private func trainEpoch(_ epoch: Int, continuing: CheckpointState.PartialEpoch?) throws -> EpochResult {
        let start = ContinuousClock.now
        context.epoch = epoch
        context.training = true
        BatchPlan.fillOrder(order, seed: config.seed, epoch: epoch, shuffle: config.training.shuffle)
        let orderBase = UnsafePointer(order.baseAddress!)
        var lossSum = continuing?.lossSum ?? 0, correct = continuing?.correct ?? 0, samples = continuing?.samples ?? 0
        var time = StepTimes(communicator)
        // Fixed for the epoch, unless reduce_on_plateau lowered it at the last epoch's end.
        let baseLearningRate = plateau?.learningRate ?? config.optimizer.learningRate
        var lr = baseLearningRate
        var lastProgress = start
        for step in (continuing?.steps ?? 0)..<plan.stepsPerEpoch {
            CollectiveWatchdog.mark(epoch: epoch + 1, step: step + 1)
            let stepStart = ContinuousClock.now
            var traceStart = trace?.now() ?? 0
            let batch = plan.localRows(step: step, order: orderBase, into: context.sampleRows)
            data.train.gather(rows: context.sampleRows, count: batch, transform: data.transform,
                              inputs: network.input.baseAddress!, labels: labels.baseAddress!)
            augmentation?.apply(rows: context.sampleRows, count: batch, epoch: epoch, inputs: network.input.baseAddress!)
            if step + 1 < plan.stepsPerEpoch { data.train.prefetch(rows: orderBase, positions: plan.localPositions(step: step + 1)) }
            let computeStart = time.mark(stepStart, communicator, into: .data)
            if let trace { trace.record(.data, since: traceStart); traceStart = trace.now() }
            network.zeroGradients()
            context.globalStep = globalStep
            let activity = try network.forward(batch: batch, context: context)
            // Gradient of the global mean loss: the step's global sample count is known up front.
            let meanScale = 1 / Float(plan.globalCount(step: step))
            let result = config.loss.evaluate(output: network.output, labels: labels.baseAddress!, batch: batch,
                                              width: network.outputWidth, gradient: network.outputGradient,
                                              gradientScale: meanScale)
            if let trace { trace.record(.forward, since: traceStart); traceStart = trace.now() }
            try network.backward(batch: batch, context: context, gradientScale: meanScale) { try sync.gradientsReady(from: $0) }
            let syncStart = time.mark(computeStart, communicator, into: .compute)
            if let trace { trace.record(.backward, since: traceStart); traceStart = trace.now() }
            let localLoss = result.lossSum + activity
            let totals = try sync.reduce(lossSum: localLoss, samples: batch, correct: result.correct, nonFinite: !localLoss.isFinite,
                                         stop: ddp_preemption_signal() != 0)
            guard !totals.nonFinite else {
                throw DDPError(.training, "the loss became non-finite at epoch \(epoch + 1), step \(step + 1) (global loss sum \(totals.lossSum)); " +
                               (lastCheckpoint.map { "the last good checkpoint is \($0)" } ?? "no checkpoint was written yet") +
                               "; try a lower optimizer.lr or set optimizer.clip_norm")
            }
            lossSum += totals.lossSum + totals.penalty * totals.samples
            correct += totals.correct
            samples += totals.samples
            lr = config.schedule.learningRate(base: baseLearningRate, epoch: epoch, globalStep: globalStep)
            try sync.update(lr: lr)
            _ = time.mark(syncStart, communicator, into: .update, gradientSync: true)
            trace?.record(.update, since: traceStart)
            globalStep += 1
            try stepScalars?.stepEnded(globalStep, loss: totals.lossSum / totals.samples + totals.penalty, lr: lr)
            if totals.stop {
                return .preempted(.init(steps: step + 1, lossSum: lossSum, correct: correct, samples: samples,
                                        seconds: (continuing?.seconds ?? 0) + seconds(ContinuousClock.now - start)))
            }
            if console.enabled, step % 16 == 0 {
                let now = ContinuousClock.now
                if now - start > .seconds(2), now - lastProgress > .milliseconds(500) {
                    lastProgress = now
                    console.progress(epoch: epoch + 1, of: config.training.epochs, step: step + 1, of: plan.stepsPerEpoch,
                                     loss: lossSum / samples, rate: samples / seconds(now - start))
                }
            }
        }
        let elapsed = seconds(ContinuousClock.now - start) + (continuing?.seconds ?? 0)
        return .completed(EpochRecord(epoch: epoch + 1, loss: lossSum / samples, accuracy: config.loss.hasAccuracy ? correct / samples : nil,
                           validationLoss: nil, validationAccuracy: nil, learningRate: Double(lr), seconds: elapsed,
                           samplesPerSecond: samples / elapsed, allreduceSeconds: seconds(time.gradientSync),
                           dataSeconds: seconds(time.data), computeSeconds: seconds(time.compute),
                           communicationSeconds: seconds(time.communication), updateSeconds: seconds(time.update)))
    }

    /// Every rank stopped after the same step: rank 0 writes a checkpoint of the step (moments
    /// gathered from every rank), all wait until it is on disk, and the run ends "preempted"
    /// (the CLI exits 75). A signal during the write only sets the flag again: the write goes
    /// on, and the previous checkpoint stays intact until the new one is whole.
    private func preempt(epoch: Int, partial: CheckpointState.PartialEpoch, records: [EpochRecord]) throws -> TrainingOutcome {
        let start = ContinuousClock.now
        let checkpointStart = trace?.now() ?? 0
        let moments = try sync.gatherOptimizerState()
        if communicator.isRoot, let moments {
            console.endProgress()
            let path = try saveCheckpoint(epochsCompleted: epoch, moments: moments, partial: partial)
            let signal = ddp_preemption_signal()
            let cause = signal == 0 ? "another rank's signal" : "signal \(signal)"
            console.line("Preempted by \(cause) at epoch \(epoch + 1), step \(partial.steps) of \(plan.stepsPerEpoch): wrote \(path) in "
                         + String(format: "%.2f s", seconds(ContinuousClock.now - start)) + "; continue with --resume")
        }
        trace?.record(.checkpoint, since: checkpointStart)
        try trace?.close(communicator)
        try communicator.barrier()
        return TrainingOutcome(epochsRun: epoch, reason: "preempted", monitor: monitor.config.monitor,
                               bestEpoch: monitor.bestEpoch + 1, bestValue: monitor.best,
                               testLoss: nil, testAccuracy: nil, records: records)
    }

    private func seconds(_ duration: Duration) -> Double {
        let parts = duration.components
        return Double(parts.seconds) + Double(parts.attoseconds) * 1e-18
    }

    /// Rank 0 runs the monitor (and reduce_on_plateau) and broadcasts its decision and the next
    /// epoch's lr in one message; every rank adopts them, so all leave the loop after the same
    /// epoch and train with the same lr even if their floating-point views ever differed.
    /// Returns the new lr when reduce_on_plateau lowered it.
    private func decide(epoch: Int, record: EpochRecord) throws -> (EarlyStopping.Decision, reducedLearningRate: Float?) {
        guard let value = record.value(of: monitor.config.monitor) else {
            throw DDPError(.config, "early_stopping.monitor \(monitor.config.monitor) has no value in epoch \(epoch + 1)")
        }
        var decision = monitor.update(epoch: epoch, value: value)
        if !earlyStoppingEnabled { decision.stop = false }
        var reduced: Float?
        if let name = plateau?.config.monitor {
            guard let plateauValue = record.value(of: name) else {
                throw DDPError(.config, "schedule.monitor \(name) has no value in epoch \(epoch + 1)")
            }
            reduced = plateau?.update(value: plateauValue)
        }
        let learningRate = plateau?.learningRate ?? 0
        var flags: [Int32] = [decision.snapshot ? 1 : 0, decision.improved ? 1 : 0, decision.stop ? 1 : 0,
                              Int32(bitPattern: learningRate.bitPattern)]
        try communicator.broadcast(&flags, root: 0)
        decision = EarlyStopping.Decision(snapshot: flags[0] != 0, improved: flags[1] != 0, stop: flags[2] != 0)
        plateau?.learningRate = Float(bitPattern: UInt32(bitPattern: flags[3]))
        if decision.snapshot { snapshot?.take(from: network) }
        return (decision, reduced)
    }

    // MARK: Start: fresh or resumed

    private func initializeWeights() throws {
        network.initialize(seed: config.seed)
        if communicator.isRoot, let path = config.model.initWeights { try network.loadWeights(from: path) }
        try broadcastModel()
    }

    /// Makes every rank's parameters and BatchNorm state rank 0's.
    private func broadcastModel() throws {
        try communicator.broadcast(network.parameters)
        try communicator.broadcast(network.state)
        var counts = network.batchNorms.map(\.batchesTracked)
        try communicator.broadcast(&counts)
        for (norm, count) in zip(network.batchNorms, counts) { norm.batchesTracked = count }
    }

    /// What every weights file carries besides the tensors: the fitted input transform, so
    /// `ddp predict` and `ddp eval` need no training data (see FeatureTransform.metadata).
    private var weightsMetadata: [String: String] { data.transform.metadata(normalization: config.data.normalize) }

    /// `moments`: the optimizer state over the whole parameter buffer, gathered from every rank.
    @discardableResult
    private func saveCheckpoint(epochsCompleted: Int, moments: (first: [Float], second: [Float]),
                                partial: CheckpointState.PartialEpoch? = nil) throws -> String {
        var tensors = network.exportTensors()
        tensors.append(StoredTensor(name: "optimizer.first_moment", shape: [moments.first.count], floats: moments.first))
        tensors.append(StoredTensor(name: "optimizer.second_moment", shape: [moments.second.count], floats: moments.second))
        if let snapshot, monitor.hasSnapshot { tensors += snapshot.tensors() }
        let state = CheckpointState(epoch: epochsCompleted, globalStep: globalStep, optimizerStep: optimizer.step,
                                    seed: config.seed, ranks: communicator.size, globalBatch: plan.globalBatch,
                                    monitor: .init(wait: monitor.wait, best: monitor.best, bestEpoch: monitor.bestEpoch,
                                                   stoppedEpoch: monitor.stoppedEpoch, hasSnapshot: monitor.hasSnapshot),
                                    tensorsFile: "", tensorsBytes: 0, tensorsChecksum: "", partialEpoch: partial,
                                    plateau: plateau?.state, loss: config.loss.signature)
        return try checkpoints.save(tensors: tensors, state: state, keep: config.checkpoint.keep, metadata: weightsMetadata)
    }

    /// Rank 0 reads the newest valid checkpoint and broadcasts it, so ranks need no shared
    /// file system and a run may resume on a different number of ranks.
    private func resumeFromCheckpoint() throws {
        var stateBytes: [UInt8] = []
        var moments: (first: [Float], second: [Float])?
        var failure: String?
        if communicator.isRoot {
            checkpoints.removeStaleTemporaries()
            let search = checkpoints.newestValid()
            for note in search.skipped { console.line("skipping damaged checkpoint: \(note)") }
            if let found = search.checkpoint {
                do {
                    try checkResumable(found.state, file: found.path)
                    try network.importTensors(found.tensors.filter { !$0.key.hasPrefix("optimizer.") && !$0.key.hasPrefix("best.") },
                                              file: found.path)
                    var loaded: [[Float]] = []
                    for name in ["optimizer.first_moment", "optimizer.second_moment"] {
                        guard let tensor = found.tensors[name] else { throw DDPError(.weights, "\(found.path): missing tensor \(name)") }
                        var values = [Float](repeating: 0, count: network.trainableCount)
                        try values.withUnsafeMutableBufferPointer { try tensor.copyFloats(into: $0, file: found.path) }
                        loaded.append(values)
                    }
                    moments = (loaded[0], loaded[1])
                    let state = found.state
                    if state.monitor.hasSnapshot, let snapshot { try snapshot.load(found.tensors, file: found.path) }
                    stateBytes = Array(try state.encoded())
                    try metrics.truncate(toEpoch: state.epoch)
                    let within = state.partialEpoch.map { ", then \($0.steps) step(s) of epoch \(state.epoch + 1)" } ?? ""
                    console.line("Resuming from \(found.path) (epoch \(state.epoch) done\(within); step \(state.globalStep))")
                } catch let error as DDPError {
                    failure = error.message
                }
            } else {
                failure = "--resume: no valid checkpoint in \(checkpoints.directory)"
                    + (search.skipped.isEmpty ? " (none written yet)" : "; skipped: " + search.skipped.joined(separator: "; "))
            }
        }
        var failed: [Int32] = [failure == nil ? 0 : 1]
        try communicator.broadcast(&failed)
        if failed[0] != 0 { throw DDPError(.weights, failure ?? "rank 0 could not load the checkpoint") }
        try broadcastModel()
        try sync.scatterOptimizerState(moments)
        try communicator.broadcast(bytes: &stateBytes)
        if let snapshot { try snapshot.broadcast(communicator) }
        let state = try CheckpointState.decoded(from: Data(stateBytes))
        startEpoch = state.epoch
        resumePartial = state.partialEpoch
        lastCheckpoint = checkpoints.statePath(epoch: startEpoch, step: resumePartial?.steps)
        globalStep = state.globalStep
        optimizer.step = state.optimizerStep
        monitor.wait = state.monitor.wait
        monitor.best = state.monitor.best
        monitor.bestEpoch = state.monitor.bestEpoch
        monitor.stoppedEpoch = state.monitor.stoppedEpoch
        monitor.hasSnapshot = state.monitor.hasSnapshot
        if let saved = state.plateau { plateau?.restore(saved) }
    }
}

/// Where an epoch's step time goes: data (gather), compute (forward, loss, backward), update
/// (penalties, clipping, optimizer) each without the time inside collectives, which is
/// `communication` (SyncBatchNorm's and the gradient sync's); `gradientSync` is the part of
/// it spent combining gradients and parameters.
struct StepTimes {
    enum Phase { case data, compute, update }
    var data = Duration.zero, compute = Duration.zero, update = Duration.zero
    var communication = Duration.zero, gradientSync = Duration.zero
    private var collectiveMark: Duration

    init(_ communicator: Communicator) { collectiveMark = communicator.collectiveTime }

    /// Ends a phase begun at `since`: its time outside collectives goes to `phase`, inside to
    /// `communication`. Returns now, the next phase's start. Two clock reads, no allocation.
    @inline(__always)
    mutating func mark(_ since: ContinuousClock.Instant, _ communicator: Communicator,
                       into phase: Phase, gradientSync: Bool = false) -> ContinuousClock.Instant {
        let now = ContinuousClock.now
        let collectives = communicator.collectiveTime
        let inside = collectives - collectiveMark
        collectiveMark = collectives
        let outside = (now - since) - inside
        switch phase {
        case .data: data += outside
        case .compute: compute += outside
        case .update: update += outside
        }
        communication += inside
        if gradientSync { self.gradientSync += inside }
        return now
    }
}

extension Trainer {
    /// A checkpoint continues *this* run only if what fixes the trajectory matches: the seed
    /// (data order, dropout masks), the global batch and the steps per epoch (the training
    /// set's size), and its counters are ones a run can have written. Epochs may grow.
    func checkResumable(_ state: CheckpointState, file: String) throws {
        guard state.format == CheckpointState.currentFormat else {
            throw DDPError(.weights, "\(file) is a '\(state.format)' checkpoint; this ddp reads '\(CheckpointState.currentFormat)'")
        }
        let counters = [("epoch", state.epoch), ("globalStep", state.globalStep), ("optimizerStep", state.optimizerStep),
                        ("monitor.wait", state.monitor.wait), ("partialEpoch.steps", state.partialEpoch?.steps ?? 0)]
        for (name, value) in counters where value < 0 {
            throw DDPError(.weights, "\(file): \(name) is \(value); a checkpoint's counters are never negative (the file was edited or damaged)")
        }
        guard state.ranks >= 1, state.monitor.bestEpoch >= 0 else {
            throw DDPError(.weights, "\(file): ranks \(state.ranks) or monitor.bestEpoch \(state.monitor.bestEpoch) is out of range (the file was edited or damaged)")
        }
        let steps = plan.stepsPerEpoch, partial = state.partialEpoch?.steps ?? 0
        let whole = state.epoch.multipliedReportingOverflow(by: steps)
        guard partial <= steps, !whole.overflow, whole.partialValue.addingReportingOverflow(partial) == (state.globalStep, false) else {
            throw DDPError(.config, "\(file) was written at step \(state.globalStep) after \(state.epoch) epoch(s)"
                           + (state.partialEpoch.map { " and \($0.steps) step(s) of the next" } ?? "")
                           + ", which is not where a run of \(steps) steps per epoch (\(data.train.count) training samples, global batch "
                           + "\(plan.globalBatch)) can be: the training data or its split changed since; resuming would not continue the same run")
        }
        guard state.seed == config.seed else {
            throw DDPError(.config, "\(file) was trained with seed \(state.seed), the config says \(config.seed): resuming would not continue the same run")
        }
        if let loss = state.loss, loss != config.loss.signature {
            throw DDPError(.config, "\(file) was trained with loss \(loss), the config says \(config.loss.signature): early stopping would "
                           + "compare val_loss across two losses; resuming would not continue the same run")
        }
        guard state.globalBatch == plan.globalBatch else {
            throw DDPError(.config, "\(file) was trained with a global batch of \(state.globalBatch), this run has \(plan.globalBatch) (training.batch_size, or batch_size_per_rank × \(communicator.size) ranks): resuming would not continue the same run")
        }
    }
}

/// A copy of the parameters and BatchNorm state, for restore_best_weights. Allocated once.
final class WeightsSnapshot {
    let parameters: UnsafeMutableBufferPointer<Float>
    let state: UnsafeMutableBufferPointer<Float>
    var batchesTracked: [Int64]

    init(network: Network) {
        parameters = .allocate(capacity: network.parameters.count)
        parameters.initialize(repeating: 0)
        state = .allocate(capacity: network.state.count)
        state.initialize(repeating: 0)
        batchesTracked = network.batchNorms.map { _ in 0 }
    }

    deinit {
        parameters.deallocate()
        state.deallocate()
    }

    func take(from network: Network) {
        _ = parameters.update(fromContentsOf: network.parameters)
        _ = state.update(fromContentsOf: network.state)
        for (index, norm) in network.batchNorms.enumerated() { batchesTracked[index] = norm.batchesTracked }
    }

    func restore(into network: Network) {
        _ = network.parameters.update(fromContentsOf: parameters)
        _ = network.state.update(fromContentsOf: state)
        for (index, norm) in network.batchNorms.enumerated() { norm.batchesTracked = batchesTracked[index] }
    }

    func tensors() -> [StoredTensor] {
        [StoredTensor(name: "best.parameters", shape: [parameters.count], floats: UnsafeBufferPointer(parameters)),
         StoredTensor(name: "best.state", shape: [state.count], floats: UnsafeBufferPointer(state)),
         StoredTensor(name: "best.batches_tracked", shape: [batchesTracked.count], int64s: batchesTracked)]
    }

    func load(_ tensors: [String: StoredTensor], file: String) throws {
        guard let p = tensors["best.parameters"], let s = tensors["best.state"] else {
            throw DDPError(.weights, "\(file): missing best.parameters/best.state for restore_best_weights")
        }
        try p.copyFloats(into: parameters, file: file)
        try s.copyFloats(into: state, file: file)
        if let counts = tensors["best.batches_tracked"]?.int64s(), counts.count == batchesTracked.count { batchesTracked = counts }
    }

    func broadcast(_ communicator: Communicator) throws {
        try communicator.broadcast(parameters)
        try communicator.broadcast(state)
        try communicator.broadcast(&batchesTracked)
    }
}
