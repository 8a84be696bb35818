/// The config's `schedule: {type: reduce_on_plateau, ...}`: keras.callbacks.ReduceLROnPlateau's
/// arguments with Keras 3's defaults.
public struct ReduceLROnPlateauConfig: Sendable, Equatable {
    public enum Mode: String, Sendable, CaseIterable { case auto, min, max }
    public var monitor = "val_loss"
    /// new lr = old lr · factor; 0 ≤ factor < 1 (Keras raises ValueError for factor ≥ 1).
    public var factor = 0.1
    /// Epochs without improvement, cooldown excluded, before the lr is reduced.
    public var patience = 10
    public var mode = Mode.auto
    /// An improvement must beat the best value by more than this (absolute, in the monitor's units).
    public var minDelta = 1e-4
    /// Epochs after a reduction during which no epoch counts against `patience`.
    public var cooldown = 0
    public var minLearningRate = 0.0

    public init() {}

    /// Keras: `mode == "min" or (mode == "auto" and "acc" not in monitor)`.
    public var minimizes: Bool {
        mode == .min || (mode == .auto && !monitor.contains("acc"))
    }
}

/// Keras 3's ReduceLROnPlateau, step for step, as a value a checkpoint can save
/// (keras/src/callbacks/reduce_lr_on_plateau.py, `_reset` and `on_epoch_end`):
///
///     start: best = +∞ (min) or −∞ (max), wait = 0, cooldown_counter = 0
///     on epoch end (monitored value v, the lr the epoch trained with):
///       if cooldown_counter > 0:  cooldown_counter −= 1, wait = 0
///       if improves(v, best):     best = v, wait = 0
///       elif cooldown_counter == 0:
///         wait += 1
///         if wait ≥ patience and old_lr > float32(min_lr):
///           lr = max(old_lr · factor, min_lr)    (in float64, then stored as float32)
///           cooldown_counter = cooldown, wait = 0
///     improves(v, best) = v < best − min_delta (min)  |  v > best + min_delta (max)
///
/// So the epoch that ends a cooldown already counts (the counter reaches 0 before the test), an
/// improvement during a cooldown still updates `best`, and once the lr sits at min_lr no
/// reduction happens: `wait` keeps counting and no new cooldown starts. The lr is a Float, as
/// Keras's optimizer variable is float32; comparing it with float32(min_lr) is what stops the
/// reductions at min_lr exactly.
///
/// ddp differences, all in what the config accepts: an unknown mode is an error (Keras warns
/// and falls back to auto), as are a negative factor, patience, cooldown, min_lr or min_delta.
public struct ReduceLROnPlateau: Sendable, Equatable {
    public let config: ReduceLROnPlateauConfig
    /// The lr the next epoch trains with (before any warmup factor).
    public var learningRate: Float
    public var best: Double
    public var wait = 0
    public var cooldownCounter = 0

    public init(config: ReduceLROnPlateauConfig, learningRate: Float) {
        self.config = config
        self.learningRate = learningRate
        best = config.minimizes ? .infinity : -.infinity
    }

    private func improves(_ value: Double) -> Bool {
        config.minimizes ? value < best - config.minDelta : value > best + config.minDelta
    }

    /// Takes the epoch's monitored value; returns the new lr when this epoch reduced it.
    public mutating func update(value: Double) -> Float? {
        if cooldownCounter > 0 {
            cooldownCounter -= 1
            wait = 0
        }
        if improves(value) {
            best = value
            wait = 0
            return nil
        }
        guard cooldownCounter == 0 else { return nil }
        wait += 1
        let old = Double(learningRate)
        guard wait >= config.patience, old > Double(Float(config.minLearningRate)) else { return nil }
        learningRate = Float(max(old * config.factor, config.minLearningRate))
        cooldownCounter = config.cooldown
        wait = 0
        return learningRate
    }

    /// What a checkpoint keeps: with it a resumed run reduces on the same epochs.
    public var state: CheckpointState.Plateau {
        .init(learningRate: Double(learningRate), best: best, wait: wait, cooldownCounter: cooldownCounter)
    }

    public mutating func restore(_ state: CheckpointState.Plateau) {
        learningRate = Float(state.learningRate)
        best = state.best
        wait = state.wait
        cooldownCounter = state.cooldownCounter
    }
}
