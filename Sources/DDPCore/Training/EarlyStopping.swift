/// The config's `early_stopping` section: keras.callbacks.EarlyStopping's arguments.
public struct EarlyStoppingConfig: Sendable, Equatable {
    public enum Mode: String, Sendable, CaseIterable { case auto, min, max }
    public var monitor = "val_loss"
    public var minDelta = 0.0
    public var patience = 0
    public var mode = Mode.auto
    public var baseline: Double?
    public var restoreBestWeights = false
    public var startFromEpoch = 0

    public init() {}

    /// Whether smaller is better, resolving `auto` as Keras does: *loss → min, *accuracy → max.
    public func minimizes() throws -> Bool {
        switch mode {
        case .min: return true
        case .max: return false
        case .auto:
            let name = monitor.hasPrefix("val_") ? String(monitor.dropFirst(4)) : monitor
            if name == "loss" { return true }
            if name == "accuracy" || name == "acc" { return false }
            throw DDPError(.config, "early_stopping.monitor: cannot tell whether '\(monitor)' should be minimized or maximized; set early_stopping.mode to min or max")
        }
    }
}

/// Keras 3's EarlyStopping decision, step for step, as a value that a checkpoint can save:
///
///     on epoch end (0-based epoch, monitored value v):
///       if epoch < start_from_epoch: nothing
///       if restore_best_weights and no snapshot yet: snapshot, best_epoch = epoch
///       wait += 1
///       if improves(v, best):            best = v, best_epoch = epoch, snapshot;
///                                        wait = 0 unless a baseline is set and v does not beat it
///       elif wait ≥ patience and epoch > 0: stop
///     improves(v, ref) = v + |min_delta| < ref (min mode) or v − |min_delta| > ref (max mode)
///     (Keras: monitor_op(v − min_delta, ref) with min_delta negated in min mode), so a value
///     must beat the reference by MORE than min_delta to count as an improvement.
///
/// At the end of training the snapshot, if any, is restored (whether or not it stopped early).
public struct EarlyStopping: Sendable, Equatable {
    public let config: EarlyStoppingConfig
    public let minimizes: Bool
    public var wait = 0
    public var best: Double
    public var bestEpoch = 0
    /// 0-based epoch at which it stopped; nil while training goes on.
    public var stoppedEpoch: Int?
    /// Whether a best-weights snapshot has been taken.
    public var hasSnapshot = false

    public struct Decision: Sendable, Equatable {
        /// Copy the current weights as the best ones.
        public var snapshot = false
        /// The monitored value improved this epoch.
        public var improved = false
        public var stop = false
    }

    public init(config: EarlyStoppingConfig) throws {
        self.config = config
        minimizes = try config.minimizes()
        best = minimizes ? .infinity : -.infinity
    }

    private func improves(_ value: Double, over reference: Double) -> Bool {
        let delta = abs(config.minDelta)
        return minimizes ? value + delta < reference : value - delta > reference
    }

    /// What a checkpoint keeps of it (the config comes from the run's config).
    public var state: CheckpointState.Monitor {
        .init(wait: wait, best: best, bestEpoch: bestEpoch, stoppedEpoch: stoppedEpoch, hasSnapshot: hasSnapshot)
    }

    public mutating func restore(_ state: CheckpointState.Monitor) {
        wait = state.wait
        best = state.best
        bestEpoch = state.bestEpoch
        stoppedEpoch = state.stoppedEpoch
        hasSnapshot = state.hasSnapshot
    }

    public mutating func update(epoch: Int, value: Double) -> Decision {
        var decision = Decision()
        guard epoch >= config.startFromEpoch else { return decision }
        if config.restoreBestWeights && !hasSnapshot {
            decision.snapshot = true
            hasSnapshot = true
            bestEpoch = epoch
        }
        wait += 1
        if improves(value, over: best) {
            best = value
            bestEpoch = epoch
            decision.improved = true
            if config.restoreBestWeights { decision.snapshot = true }
            if config.baseline == nil || improves(value, over: config.baseline!) { wait = 0 }
            return decision
        }
        if wait >= config.patience && epoch > 0 {
            stoppedEpoch = epoch
            decision.stop = true
        }
        return decision
    }
}
