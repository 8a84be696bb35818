import Foundation

/// What a run carries from epoch to epoch besides the weights and moments, and how it
/// survives a restart: the position (epochs done, the global step, a partial epoch), early
/// stopping, reduce_on_plateau and the best-weights snapshot. Each piece saves itself into a
/// `CheckpointState` (and the snapshot into tensors) and restores itself from one the same
/// way; the checkpoint files are named by `CheckpointStore`.
///
/// Rank 0 decides at each epoch's end (stop, improved, the next lr) and broadcasts its
/// decision in one message, so every rank leaves the loop after the same epoch and trains the
/// next with the same lr even if their floating-point views ever differed.
final class RunState {
    let config: TrainingConfig
    let communicator: Communicator
    let checkpoints: CheckpointStore
    /// Epochs completed before this process started (0 for a fresh run).
    private(set) var startEpoch = 0
    /// Set by a resume from a checkpoint written mid-epoch (on a preemption signal); the first
    /// epoch takes it.
    var resumePartial: CheckpointState.PartialEpoch?
    /// Optimizer steps taken by the run, over all epochs.
    var globalStep = 0
    /// Decides improvements (and stopping, when `early_stopping` is configured).
    private(set) var monitor: EarlyStopping
    let earlyStoppingEnabled: Bool
    /// `schedule: {type: reduce_on_plateau}`: holds the lr each epoch trains with; nil otherwise.
    private(set) var plateau: ReduceLROnPlateau?
    /// `restore_best_weights`: the best epoch's parameters and BatchNorm state.
    let snapshot: WeightsSnapshot?
    /// The newest checkpoint this run wrote or resumed from; every rank knows it, so any
    /// rank's error message can name it.
    private(set) var lastCheckpoint: String?

    init(config: TrainingConfig, communicator: Communicator, network: Network, hasValidation: Bool, runDirectory: String) throws {
        self.config = config
        self.communicator = communicator
        checkpoints = CheckpointStore(runDirectory: runDirectory)
        if let early = config.earlyStopping {
            monitor = try EarlyStopping(config: early)
            earlyStoppingEnabled = true
        } else {
            var tracker = EarlyStoppingConfig()
            tracker.monitor = hasValidation ? "val_loss" : "loss"
            tracker.patience = Int.max
            monitor = try EarlyStopping(config: tracker)
            earlyStoppingEnabled = false
        }
        if case let .reduceOnPlateau(plateauConfig) = config.schedule.kind {
            plateau = ReduceLROnPlateau(config: plateauConfig, learningRate: config.optimizer.learningRate)
        }
        snapshot = monitor.config.restoreBestWeights ? WeightsSnapshot(network: network) : nil
    }

    /// The lr an epoch's schedule starts from: the config's, unless reduce_on_plateau lowered it.
    var baseLearningRate: Float { plateau?.learningRate ?? config.optimizer.learningRate }

    /// The 0-based epoch a resumed run had already stopped early at; nil otherwise.
    var stoppedEarly: Int? { earlyStoppingEnabled ? monitor.stoppedEpoch : nil }

    // MARK: The epoch's end

    /// Rank 0 runs the monitor (and reduce_on_plateau) and broadcasts its decision and the next
    /// epoch's lr in one message; every rank adopts them. Returns the new lr when
    /// reduce_on_plateau lowered it.
    func decide(epoch: Int, record: EpochMetrics, network: Network) throws -> (EarlyStopping.Decision, reducedLearningRate: Float?) {
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

    /// Whether epoch `epoch` (0-based) ends with a checkpoint: an improvement, the
    /// `checkpoint.every_epochs` period, the stop or the last epoch.
    func checkpointDue(after epoch: Int, decision: EarlyStopping.Decision) -> Bool {
        let every = config.checkpoint.everyEpochs
        return decision.improved || (every > 0 && (epoch + 1) % every == 0) || decision.stop || epoch + 1 == config.training.epochs
    }

    /// Every rank records the checkpoint rank 0 wrote after `epochsCompleted` epochs.
    func checkpointWritten(epochsCompleted: Int) {
        lastCheckpoint = checkpoints.statePath(epoch: epochsCompleted)
    }

    /// The error every rank raises when the step's totals are not finite.
    func nonFiniteLoss(epoch: Int, step: Int, totals: StepTotals) -> DDPError {
        DDPError(.training, "the loss became non-finite at epoch \(epoch + 1), step \(step + 1) (global loss sum \(totals.lossSum)); " +
                 (lastCheckpoint.map { "the last good checkpoint is \($0)" } ?? "no checkpoint was written yet") +
                 "; try a lower optimizer.lr or set optimizer.clip_norm")
    }

    // MARK: Save

    /// Rank 0: writes the checkpoint of the run after `epochsCompleted` epochs (and `partial`
    /// steps of the next). `moments`: the optimizer state over the whole parameter buffer,
    /// gathered from every rank. Returns the state file's path.
    @discardableResult
    func save(network: Network, optimizerStep: Int, moments: (first: [Float], second: [Float]), epochsCompleted: Int,
              globalBatch: Int, partial: CheckpointState.PartialEpoch? = nil, metadata: [String: String]) throws -> String {
        var tensors = network.exportTensors()
        tensors.append(StoredTensor(name: "optimizer.first_moment", shape: [moments.first.count], floats: moments.first))
        tensors.append(StoredTensor(name: "optimizer.second_moment", shape: [moments.second.count], floats: moments.second))
        if let snapshot, monitor.hasSnapshot { tensors += snapshot.tensors() }
        let state = CheckpointState(epoch: epochsCompleted, globalStep: globalStep, optimizerStep: optimizerStep,
                                    seed: config.seed, ranks: communicator.size, globalBatch: globalBatch,
                                    monitor: monitor.state, tensorsFile: "", tensorsBytes: 0, tensorsChecksum: "",
                                    partialEpoch: partial, plateau: plateau?.state, loss: config.lossSignature,
                                    schedule: config.schedule.signature, deterministic: deterministicIdentity)
        return try checkpoints.save(tensors: tensors, state: state, keep: config.checkpoint.keep, metadata: metadata)
    }

    // MARK: Start

    /// Makes every rank's parameters and BatchNorm state rank 0's.
    func broadcastModel(_ network: Network) throws {
        try communicator.broadcast(network.parameters)
        try communicator.broadcast(network.state)
        var counts = Array(network.counters)
        try communicator.broadcast(&counts)
        _ = network.counters.update(fromContentsOf: counts)
    }

    // MARK: Resume

    /// Rank 0 reads the newest valid checkpoint and broadcasts it, so ranks need no shared
    /// file system and a run may resume on a different number of ranks. Restores the weights,
    /// BatchNorm state, moments, snapshot and every counter on every rank; returns the
    /// optimizer's step count.
    func resume(network: Network, sync: GradientSync, plan: BatchPlan, trainingSamples: Int, metrics: MetricsLog,
                console: Console) throws -> Int {
        var stateBytes: [UInt8] = []
        var pathBytes: [UInt8] = []
        var moments: (first: [Float], second: [Float])?
        var failure: String?
        if communicator.isRoot {
            checkpoints.removeStaleTemporaries()
            let search = checkpoints.newestValid()
            for note in search.skipped { console.line("skipping damaged checkpoint: \(note)") }
            if let found = search.checkpoint {
                do {
                    try checkResumable(found.state, file: found.path, plan: plan, trainingSamples: trainingSamples)
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
                    pathBytes = Array(found.path.utf8)
                    try metrics.truncate(toEpoch: state.epoch)
                    console.line("Resuming from \(found.path): " + Self.position(state, stepsPerEpoch: plan.stepsPerEpoch))
                    if let notice = scheduleNotice(state) { console.line(notice) }
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
        try broadcastModel(network)
        try sync.scatterOptimizerState(moments)
        try communicator.broadcast(bytes: &stateBytes)
        try communicator.broadcast(bytes: &pathBytes)
        if let snapshot { try snapshot.broadcast(communicator) }
        let state = try CheckpointState.decoded(from: Data(stateBytes))
        startEpoch = state.epoch
        resumePartial = state.partialEpoch
        // Rank 0's file, whatever ddp named it (an older one named step checkpoints otherwise).
        lastCheckpoint = String(decoding: pathBytes, as: UTF8.self)
        globalStep = state.globalStep
        monitor.restore(state.monitor)
        if let saved = state.plateau { plateau?.restore(saved) }
        return state.optimizerStep
    }

    /// Where a checkpoint leaves the run, 1-based as the epoch lines count: "after epoch 3
    /// (optimizer step 2,814)", or inside an epoch "in epoch 2, after step 148 of 938
    /// (optimizer step 1,086)".
    static func position(_ state: CheckpointState, stepsPerEpoch: Int) -> String {
        let where_ = state.partialEpoch.map { "in epoch \(state.epoch + 1), after step \($0.steps) of \(stepsPerEpoch)" }
            ?? (state.epoch == 0 ? "before the first epoch" : "after epoch \(state.epoch)")
        return where_ + " (optimizer step \(state.globalStep))"
    }

    /// One line when the lr schedule differs from the one the checkpoint's epochs followed (a
    /// cosine's t_max follows training.epochs, so extending a run changes it): the resume goes
    /// on, under the new schedule from here.
    func scheduleNotice(_ state: CheckpointState) -> String? {
        guard let before = state.schedule, before != config.schedule.signature else { return nil }
        return "notice: the checkpoint's epochs followed the lr schedule \(before); this run follows \(config.schedule.signature) "
            + "from here on (training.epochs or schedule changed), so its lr differs from an uninterrupted run's"
    }

    /// What a deterministic run's bits rest on besides the config (`VirtualShards`); nil otherwise.
    var deterministicIdentity: CheckpointState.Deterministic? {
        guard config.distributed.deterministic else { return nil }
        return .init(virtualShards: config.distributed.virtualShards, blasCore: BLASKernels.current ?? "unknown")
    }

    /// A checkpoint continues *this* run only if what fixes the trajectory matches: the seed
    /// (data order, dropout masks), the loss, the global batch and the steps per epoch (the
    /// training set's size), and its counters are ones a run can have written. Epochs may grow.
    func checkResumable(_ state: CheckpointState, file: String, plan: BatchPlan, trainingSamples: Int) throws {
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
        // Counters a run adds to: none may exceed what its epochs and steps allow.
        let bounded = [("epoch", state.epoch, 1_000_000_000), ("optimizerStep", state.optimizerStep, state.globalStep),
                       ("monitor.bestEpoch", state.monitor.bestEpoch, state.epoch), ("monitor.wait", state.monitor.wait, state.epoch),
                       ("monitor.stoppedEpoch", state.monitor.stoppedEpoch ?? 0, state.epoch),
                       ("plateau.wait", state.plateau?.wait ?? 0, state.epoch),
                       ("plateau.cooldownCounter", state.plateau?.cooldownCounter ?? 0, state.epoch)]
        for (name, value, limit) in bounded where value < 0 || value > limit {
            throw DDPError(.weights, "\(file): \(name) is \(value), outside 0…\(limit) for a checkpoint of \(counted(state.epoch, "epoch")) and \(state.globalStep) steps (the file was edited or damaged)")
        }
        let steps = plan.stepsPerEpoch, partial = state.partialEpoch?.steps ?? 0
        let whole = state.epoch.multipliedReportingOverflow(by: steps)
        guard partial <= steps, !whole.overflow, whole.partialValue.addingReportingOverflow(partial) == (state.globalStep, false) else {
            throw DDPError(.config, "\(file) was written at step \(state.globalStep) after \(counted(state.epoch, "epoch"))"
                           + (state.partialEpoch.map { " and \(counted($0.steps, "step")) of the next" } ?? "")
                           + ", which is not where a run of \(steps) steps per epoch (\(trainingSamples) training samples, global batch "
                           + "\(plan.globalBatch)) can be: the training data or its split changed since; resuming would not continue the same run")
        }
        guard state.seed == config.seed else {
            throw DDPError(.config, "\(file) was trained with seed \(state.seed), the config says \(config.seed): resuming would not continue the same run")
        }
        if let loss = state.loss, loss != config.lossSignature {
            throw DDPError(.config, "\(file) was trained with loss \(loss), the config says \(config.lossSignature): early stopping would "
                           + "compare val_loss across two losses; resuming would not continue the same run")
        }
        if let before = state.deterministic, let now = deterministicIdentity, before != now {
            throw DDPError(.config, "\(file) was trained in the deterministic mode with \(before.virtualShards) virtual shards on OpenBLAS's \(before.blasCore) kernels; this run has \(now.virtualShards) on \(now.blasCore): its bits would not continue the same run (set OPENBLAS_CORETYPE=\(before.blasCore) and distributed.virtual_shards: \(before.virtualShards), or resume with distributed.deterministic: false)")
        }
        guard state.globalBatch == plan.globalBatch else {
            throw DDPError(.config, "\(file) was trained with a global batch of \(state.globalBatch), this run has \(plan.globalBatch) (training.batch_size, or batch_size_per_rank × \(communicator.size) ranks; × accumulate_steps): resuming would not continue the same run")
        }
    }
}
