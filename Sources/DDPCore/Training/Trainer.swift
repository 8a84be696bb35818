import Foundation
import _CBLAS
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
    /// `model.init_weights`' tensors when the caller has read and checked them already (the
    /// CLI does, before MPI starts): a fresh run's rank 0 then does not read the file again.
    public var initialWeights: [String: StoredTensor]?
    public init(runDirectory: String) { self.runDirectory = runDirectory }
}

/// Why a run's loop ended; metrics.jsonl's end line writes the raw value.
public enum EndReason: String, Sendable {
    /// Every configured epoch trained.
    case completed
    /// The monitor stopped improving for `early_stopping.patience` epochs.
    case earlyStopping = "early_stopping"
    /// A signal asked the job to stop: a checkpoint of the last step was written (exit 75).
    case preempted
}

/// How a run ended: metrics.jsonl's end line (written unless the run was preempted) and the
/// epochs this process trained.
public struct TrainingOutcome: Sendable {
    public var end: EndMetrics
    public var epochs: [EpochMetrics]
    public var reason: EndReason { EndReason(rawValue: end.reason) ?? .completed }
}

/// The training run every rank executes, as a short story:
///
///     start (fresh weights broadcast from rank 0, or the newest checkpoint)
///     for each epoch: its steps (`TrainStep`, watched by `StepObserver`)
///                     → validation (sharded, one allreduce)
///                     → rank 0 decides early stopping and the plateau's lr, broadcasts it (`RunState`)
///                     → rank 0 writes the epoch's metrics, best weights and checkpoint
///     end: restore the best weights if asked, test, write model.safetensors and the end line
///
/// A preemption signal on any rank reaches every rank with the step's totals; all stop after
/// that step and rank 0 writes a checkpoint of it. Rank 0 alone writes metrics, weights and
/// checkpoints.
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
    private let step: TrainStep
    private let observer: StepObserver
    private let evaluator: Evaluator
    private let state: RunState
    private let order: UnsafeMutableBufferPointer<Int32>
    private let metrics: MetricsLog
    private let console: Console
    private var tensorBoard: TensorBoardWriter?

    public init(config given: TrainingConfig, data: RunData, communicator: Communicator, options: TrainOptions) throws {
        if given.distributed.deterministic { try Self.checkDeterministic(given) }
        plan = try BatchPlan(sampleCount: data.train.count, loop: given.training, ranks: communicator.size, rank: communicator.rank,
                             virtualShards: given.distributed.deterministic ? given.distributed.virtualShards : nil)
        var config = given
        config.optimizer.learningRate = given.optimizer.scaledLearningRate(globalBatch: plan.globalBatch)
        self.config = config
        self.data = data
        self.communicator = communicator
        self.options = options
        (network, sync) = try makeNetworkAndSync(config: config, communicator: communicator)
        // BatchNorm over features needs two samples; over an image's channels N·H·W values do.
        if network.batchNorms.contains(where: { $0.trainable && $0.positions == 1 }) {
            let smallest = plan.smallestMicroBatch
            if smallest < 2 {
                let pass = plan.globalBatch == plan.microBatch ? "batch" : "micro-batch"
                throw DDPError(.config, "the last \(pass) of each epoch has \(smallest) sample (\(data.train.count) samples, \(pass) \(plan.microBatch)); BatchNorm needs at least 2 in training: set training.drop_last: true or change training.batch_size")
            }
        }
        let totalSteps = plan.stepsPerEpoch * config.training.epochs
        if case let .oneCycle(cycle) = config.schedule.kind, cycle.pctStart * Double(totalSteps) <= 1 {
            throw DDPError(.config, "schedule.pct_start: \(cycle.pctStart) of the run's \(totalSteps) steps leaves one_cycle's rise less than one step (torch divides by zero there); expected pct_start × steps > 1")
        }
        if config.schedule.warmupSteps >= totalSteps {
            throw DDPError(.config, "schedule.warmup_steps: a warmup of \(config.schedule.warmupSteps) steps leaves nothing of the run's \(totalSteps) (training.epochs \(config.training.epochs) × \(plan.stepsPerEpoch) steps an epoch) to the schedule; expected fewer")
        }
        let context = StepContext(communicator: communicator, maxBatch: max(plan.maxLocalBatch, Evaluator.chunk(for: config.model)))
        context.seed = config.seed
        network.reserve(maxBatch: plan.maxLocalBatch)
        if config.distributed.deterministic {
            // GEMM results depend on BLAS threading: one thread per rank, whatever the environment says.
            openblas_set_num_threads(1)
            let shards = try VirtualShards(count: config.distributed.virtualShards, communicator: communicator,
                                           maxWidth: network.batchNorms.map { 2 * $0.channels + 1 }.max() ?? 0)
            network.reserveShardGradients(localShards: shards.local, accumulating: config.training.accumulateSteps > 1)
            context.shards = shards
        }
        let classWeights = try config.classWeight?.resolve(classes: config.loss.weightedClasses(width: network.outputWidth) ?? 0,
                                                          labels: data.train.labels, origin: data.train.origin) ?? []
        evaluator = Evaluator(network: network, loss: config.loss, context: context, classWeights: classWeights)
        step = TrainStep(network: network, sync: sync, plan: plan, context: context, loss: config.loss, data: data,
                         augmentation: try Augmentation(config: config, data: data), classWeights: classWeights)
        step.capturesEpochGradient = config.logging.histograms
        order = .allocate(capacity: data.train.count)
        order.initialize(repeating: 0)
        state = try RunState(config: config, communicator: communicator, network: network, hasValidation: data.validation != nil,
                             runDirectory: options.runDirectory)
        metrics = MetricsLog(path: options.runDirectory + "/metrics.jsonl")
        console = Console(enabled: communicator.isRoot && !options.quiet, plainProgressSeconds: config.logging.progressSeconds)
        observer = StepObserver(communicator: communicator, console: console)
    }

    deinit { order.deallocate() }

    /// A trainer, built on every rank; what it refuses of the config (the batch plan,
    /// BatchNorm's smallest batch, the schedule, the deterministic mode's shards: functions of
    /// the config, the data and np alone) every rank refuses alike, so it is thrown as an
    /// `AgreedFailure`: one message (rank 0's), every rank exits 1, no MPI_Abort.
    public static func make(config: TrainingConfig, data: RunData, communicator: Communicator, options: TrainOptions) throws -> Trainer {
        do {
            return try Trainer(config: config, data: data, communicator: communicator, options: options)
        } catch let error as DDPError where error.kind == .config {
            throw AgreedFailure(error: error, printHere: communicator.isRoot)
        }
    }

    /// What the deterministic mode cannot promise the same bits for, refused before anything
    /// runs (`VirtualShards` refuses a rank count that does not divide the shards).
    static func checkDeterministic(_ config: TrainingConfig) throws {
        let why = "distributed.deterministic: true"
        if config.training.batchSizePerRank != nil {
            throw DDPError(.config, "training.batch_size_per_rank makes the global batch depend on np, which \(why) keeps fixed: give training.batch_size instead")
        }
        if !config.distributed.shardedUpdate {
            throw DDPError(.config, "distributed.sharded_update: false does not go with \(why), whose sums the sharded update folds in a fixed order; leave it on")
        }
    }

    // MARK: The run

    /// Trains to the end. An error may be thrown on one rank only (a failed write on rank 0,
    /// say) while the others wait in a collective, so a caller under MPI must end the job on
    /// any error (the CLI calls MPI_Abort).
    public func run() throws -> TrainingOutcome {
        try start()
        let runStart = Date()
        var records: [EpochMetrics] = []
        var reason = EndReason.completed
        var epoch = state.startEpoch
        if let stopped = state.stoppedEarly {
            // The checkpointed run had already stopped early: resuming finishes it, trains no more.
            reason = .earlyStopping
            epoch = config.training.epochs
            console.line("The run stopped early at epoch \(stopped + 1); nothing left to train.")
        }
        while epoch < config.training.epochs {
            let epochStart = Date()
            let continuing = state.resumePartial
            state.resumePartial = nil
            var record: EpochMetrics
            switch try trainEpoch(epoch, continuing: continuing) {
            case .completed(let completed): record = completed
            case .preempted(let partial): return try preempt(epoch: epoch, partial: partial, records: records)
            }
            if let validation = data.validation {
                let validationStart = observer.trace?.now() ?? 0
                let result = try evaluator.evaluate(validation, transform: data.transform, countConfusion: config.metrics.needsConfusion,
                                                    topK: config.metrics.topK ?? 0)
                record.valLoss = result.loss
                record.valAccuracy = result.accuracy
                record.valTopKAccuracy = result.topKAccuracy
                if let confusion = result.confusion {
                    let report = ClassificationReport(confusion: confusion)
                    record.valPrecision = config.metrics.precision ? report.macroPrecision : nil
                    record.valRecall = config.metrics.recall ? report.macroRecall : nil
                    record.valF1 = config.metrics.f1 ? report.macroF1 : nil
                }
                observer.trace?.record(.validation, since: validationStart)
            }
            record.seconds = Date().timeIntervalSince(epochStart) + (continuing?.seconds ?? 0)
            let (decision, reducedLearningRate) = try state.decide(epoch: epoch, record: record, network: network)
            records.append(record)
            try endEpoch(epoch, record: record, decision: decision, reducedLearningRate: reducedLearningRate)
            epoch += 1
            if decision.stop {
                reason = .earlyStopping
                console.line("Epoch \(epoch): early stopping")
                break
            }
        }
        return try finish(epochsRun: epoch, reason: reason, records: records, runStart: runStart)
    }

    /// Prepares the run directory (rank 0), then the weights: fresh ones broadcast from rank 0,
    /// or the newest checkpoint's. Opens the trace and TensorBoard files.
    private func start() throws {
        if communicator.isRoot {
            if !options.resume {
                try RunDirectory.prepareFresh(options.runDirectory, overwrite: options.overwrite, remove: true)
            }
            try RunDirectory.create(options.runDirectory)
        }
        if options.resume {
            optimizer.step = try state.resume(network: network, sync: sync, plan: plan, trainingSamples: data.train.count,
                                              metrics: metrics, console: console)
        } else {
            network.initialize(seed: config.seed)
            if communicator.isRoot, let path = config.model.initWeights {
                try network.importTensors(try options.initialWeights ?? SafeTensors.read(path: path).tensors, file: path)
            }
            try state.broadcastModel(network)
            if communicator.isRoot { try AtomicFile.write("", to: metrics.path) }
        }
        // Only once a resume is accepted: a refused one leaves the run's config as it was.
        if communicator.isRoot { try AtomicFile.write(config.resolvedYAML, to: options.runDirectory + "/config.yaml") }
        if options.trace {
            // Spans an epoch: about 32 per pass, capped (a longer epoch drops the rest, and says so).
            let spans = min(saturatingProduct(saturatingProduct(plan.stepsPerEpoch, 32), config.training.accumulateSteps), 1 << 24) + 256
            let trace = TraceRecorder(path: options.runDirectory + "/trace.json", spansPerEpoch: spans)
            observer.trace = trace
            communicator.trace = trace
        }
        if communicator.isRoot && config.logging.tensorboard {
            tensorBoard = try TensorBoardWriter(directory: options.runDirectory, resumingAfter: options.resume ? state.startEpoch : nil)
            if config.logging.tensorboardEverySteps > 0 {
                observer.stepScalars = try TensorBoardStepWriter(runDirectory: options.runDirectory,
                                                                 everySteps: config.logging.tensorboardEverySteps,
                                                                 resumingAfterStep: options.resume ? state.globalStep : nil)
            }
        }
    }

    // MARK: One epoch

    enum EpochResult {
        case completed(EpochMetrics)
        /// A preemption signal reached some rank: every rank stopped after this many steps.
        case preempted(CheckpointState.PartialEpoch)
    }

    /// Trains epoch `epoch` from its first step, or from where `continuing` left it.
    private func trainEpoch(_ epoch: Int, continuing: CheckpointState.PartialEpoch?) throws -> EpochResult {
        observer.epochBegins(firstStep: continuing?.steps ?? 0)
        step.context.epoch = epoch
        step.context.training = true
        BatchPlan.fillOrder(order, seed: config.seed, epoch: epoch, shuffle: config.training.shuffle)
        let orderBase = UnsafePointer(order.baseAddress!)
        var sums = RunningSums(continuing)
        let baseLearningRate = state.baseLearningRate
        var lr = baseLearningRate
        for index in (continuing?.steps ?? 0)..<plan.stepsPerEpoch {
            observer.stepBegins(epoch: epoch, step: index)
            lr = config.schedule.learningRate(base: baseLearningRate, epoch: epoch, globalStep: state.globalStep,
                                               stepsPerEpoch: plan.stepsPerEpoch)
            step.sync.optimizer.scheduledMomentum = config.schedule.momentum(globalStep: state.globalStep, stepsPerEpoch: plan.stepsPerEpoch)
            let totals = try step.run(step: index, epoch: epoch, order: orderBase, globalStep: state.globalStep, lr: lr, observer: observer)
            guard !totals.nonFinite else { throw state.nonFiniteLoss(epoch: epoch, step: index, totals: totals) }
            sums.add(totals)
            state.globalStep += 1
            try observer.stepEnded(epoch: epoch, of: config.training.epochs, step: index, of: plan.stepsPerEpoch,
                                   globalStep: state.globalStep, totals: totals, lr: lr, running: sums)
            if totals.stop {
                return .preempted(.init(steps: index + 1, lossSum: sums.lossSum, correct: sums.correct, samples: sums.samples,
                                        seconds: (continuing?.seconds ?? 0) + observer.epochSeconds))
            }
        }
        let elapsed = observer.epochSeconds + (continuing?.seconds ?? 0)
        let time = observer.times
        return .completed(EpochMetrics(epoch: epoch + 1, loss: sums.lossSum / sums.samples,
                                       accuracy: config.loss.hasAccuracy ? sums.correct / sums.samples : nil,
                                       lr: Double(lr), seconds: elapsed, samplesPerSecond: sums.samples / elapsed,
                                       syncSeconds: time.gradientSync.seconds, dataSeconds: time.data.seconds,
                                       computeSeconds: time.compute.seconds, communicationSeconds: time.communication.seconds,
                                       updateSeconds: time.update.seconds))
    }

    /// After the decision: rank 0 prints the epoch line, appends its metrics, writes the best
    /// weights when the monitor improved and the checkpoint when one is due (the moments are
    /// gathered from every rank first: a collective); then the trace's epoch is flushed.
    private func endEpoch(_ epoch: Int, record: EpochMetrics, decision: EarlyStopping.Decision, reducedLearningRate: Float?) throws {
        let checkpointDue = state.checkpointDue(after: epoch, decision: decision)
        let checkpointStart = observer.trace?.now() ?? 0
        let moments = checkpointDue ? try sync.gatherOptimizerState() : nil
        if communicator.isRoot {
            console.endProgress()
            console.line(record.consoleLine(totalEpochs: config.training.epochs))
            if let reducedLearningRate {
                console.line("Epoch \(epoch + 1): ReduceLROnPlateau reducing learning rate to \(reducedLearningRate).")
            }
            try metrics.append(record.json)
            try tensorBoard?.append(record)
            if let gradient = step.epochGradient { try tensorBoard?.appendHistograms(of: network, gradient: gradient, epoch: record.epoch) }
            if decision.improved { try network.saveWeights(to: options.runDirectory + "/best.safetensors", metadata: weightsMetadata) }
            if checkpointDue, let moments {
                try state.save(network: network, optimizerStep: optimizer.step, moments: moments, epochsCompleted: epoch + 1,
                               globalBatch: plan.globalBatch, metadata: weightsMetadata)
            }
        }
        if checkpointDue {
            observer.trace?.record(.checkpoint, since: checkpointStart)
            state.checkpointWritten(epochsCompleted: epoch + 1)
        }
        try observer.trace?.flush(communicator)
    }

    // MARK: The end

    /// Restores the best weights if asked, evaluates the test split, and (rank 0) writes
    /// model.safetensors and metrics.jsonl's end line.
    private func finish(epochsRun: Int, reason: EndReason, records: [EpochMetrics], runStart: Date) throws -> TrainingOutcome {
        if let snapshot = state.snapshot, state.monitor.hasSnapshot {
            snapshot.restore(into: network)
            console.line("Restoring model weights from the end of the best epoch: \(state.monitor.bestEpoch + 1).")
        }
        var end = endMetrics(reason: reason, epochsRun: epochsRun, seconds: nil)
        if let test = data.test {
            // A classifier's test confusion matrix goes to the end line (`ddp plot`'s confusion.svg),
            // up to 100 classes (10,000 counts on one JSON line).
            let result = try evaluator.evaluate(test, transform: data.transform, countConfusion: network.outputWidth <= 100)
            end.testLoss = result.loss
            end.testAccuracy = result.accuracy
            end.testConfusionMatrix = result.confusion
        }
        if communicator.isRoot {
            try network.saveWeights(to: options.runDirectory + "/model.safetensors", metadata: weightsMetadata)
            end.seconds = Date().timeIntervalSince(runStart)     // the whole run, its last write included
            try metrics.append(MetricsLog.encode(end))
            if let loss = end.testLoss {
                console.line(String(format: "test_loss: %.4f", loss) + (end.testAccuracy.map { String(format: " - test_accuracy: %.4f", $0) } ?? ""))
            }
        }
        try observer.trace?.close(communicator)
        try communicator.barrier()
        return TrainingOutcome(end: end, epochs: records)
    }

    private func endMetrics(reason: EndReason, epochsRun: Int, seconds: Double?) -> EndMetrics {
        var end = EndMetrics(reason: reason.rawValue, epochsRun: epochsRun, bestEpoch: state.monitor.bestEpoch + 1, monitor: state.monitor.config.monitor,
                             bestValue: state.monitor.best, testLoss: nil, testAccuracy: nil, ranks: communicator.size, globalBatch: plan.globalBatch,
                             seconds: seconds, blasCore: BLASKernels.current, blasCoreChosenBy: BLASKernels.statusHere?.chosenBy.rawValue)
        end.virtualShards = plan.virtualShards
        return end
    }

    /// Every rank stopped after the same step: rank 0 writes a checkpoint of the step (moments
    /// gathered from every rank), all wait until it is on disk, and the run ends `.preempted`
    /// (the CLI exits 75). A signal during the write only sets the flag again: the write goes
    /// on, and the previous checkpoint stays intact until the new one is whole.
    private func preempt(epoch: Int, partial: CheckpointState.PartialEpoch, records: [EpochMetrics]) throws -> TrainingOutcome {
        let start = ContinuousClock.now
        let checkpointStart = observer.trace?.now() ?? 0
        let moments = try sync.gatherOptimizerState()
        if communicator.isRoot, let moments {
            console.endProgress()
            let path = try state.save(network: network, optimizerStep: optimizer.step, moments: moments, epochsCompleted: epoch,
                                      globalBatch: plan.globalBatch, partial: partial, metadata: weightsMetadata)
            let signal = ddp_preemption_signal()
            let cause = signal == 0 ? "another rank's signal" : "signal \(signal)"
            console.line("Preempted by \(cause) at epoch \(epoch + 1), step \(partial.steps) of \(plan.stepsPerEpoch): wrote \(path) in "
                         + String(format: "%.2f s", (ContinuousClock.now - start).seconds) + "; continue with --resume")
        }
        observer.trace?.record(.checkpoint, since: checkpointStart)
        try observer.trace?.close(communicator)
        try communicator.barrier()
        return TrainingOutcome(end: endMetrics(reason: .preempted, epochsRun: epoch, seconds: nil), epochs: records)
    }

    /// What every weights file carries besides the tensors: the fitted input transform, so
    /// `ddp predict` and `ddp eval` need no training data (see FeatureTransform.metadata).
    private var weightsMetadata: [String: String] { data.transform.metadata(normalization: config.data.normalize) }
}
