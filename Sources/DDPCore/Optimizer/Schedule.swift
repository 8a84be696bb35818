#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Learning-rate schedules as pure functions of (epoch, global step), so a resumed run needs no
/// schedule state beyond the step counter it already checkpoints; reduce_on_plateau is the
/// exception, its lr decided at epoch ends from the monitored value (`ReduceLROnPlateau`,
/// whose state the checkpoint keeps). Each as torch.optim.lr_scheduler defines it, stepped
/// once per epoch as torch's examples step them (e is the schedule's own epoch, from 0):
///
/// - constant: lr₀
/// - step:        lr₀·γ^⌊e/step_size⌋                              (StepLR)
/// - multistep:   lr₀·γ^(number of milestones ≤ e)                 (MultiStepLR)
/// - exponential: lr₀·γ^e                                          (ExponentialLR)
/// - cosine:      η_min + (lr₀ − η_min)(1 + cos(π·e/T_max))/2      (CosineAnnealingLR),
///                held at η_min after T_max (torch would climb back up: it is periodic)
/// - reduce_on_plateau: the lr `ReduceLROnPlateau` holds, passed in as `base`
/// - one_cycle:   OneCycleLR (Smith & Topin 2017) per optimizer step over epochs × steps per
///                epoch, cosine annealing, two phases: from max_lr/div_factor up to max_lr over
///                the first pct_start of the steps, then down to max_lr/(div_factor·final_div_factor);
///                with cycle_momentum (torch's default) the momentum (SGD's, RMSprop's, LARS's; Adam's, LAMB's β₁)
///                goes the other way, max_momentum → base_momentum → max_momentum (`momentum`)
///
/// Any of them may start with a linear warmup over its first W optimizer steps
/// (`warmup_steps: W`, or `warmup_epochs: E` for W = E·steps per epoch), as torch's
/// SequentialLR([LinearLR(start_factor: f, total_iters: W), schedule], milestones: [W]) with
/// LinearLR stepped per optimizer step (Goyal et al. 2017, 'gradual warmup'): step i < W trains
/// at lr₀·(f + (1 − f)·i/W), rising from f·lr₀ (f = `warmup_start_factor`, default 0: torch
/// asks f > 0, here 0 is allowed and makes the first step's lr 0) towards lr₀; from step W on
/// the schedule runs from its own start, its epoch e = epoch − ⌊W/steps per epoch⌋. With
/// reduce_on_plateau the warmup climbs to the plateau's lr, and a reduction decided during the
/// warmup lowers what it climbs to. `type: warmup` is warmup followed by constant.
public struct LearningRateSchedule: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case constant
        case step(stepSize: Int, gamma: Float)
        case multistep(milestones: [Int], gamma: Float)
        case exponential(gamma: Float)
        case cosine(tMax: Int, minimum: Float)
        case reduceOnPlateau(ReduceLROnPlateauConfig)
        case oneCycle(OneCycle)
    }

    /// torch.optim.lr_scheduler.OneCycleLR's settings (anneal_strategy 'cos', three_phase off);
    /// `maxLR` nil = the optimizer's lr.
    public struct OneCycle: Sendable, Equatable {
        public var maxLR: Float?
        public var epochs: Int
        public var pctStart: Double = 0.3
        public var divFactor: Double = 25
        public var finalDivFactor: Double = 1e4
        public var cycleMomentum = true
        public var baseMomentum: Double = 0.85
        public var maxMomentum: Double = 0.95

        public init(epochs: Int) { self.epochs = epochs }

        /// (lr, momentum) at step `step` of `total`, torch's `get_lr` in Double: phase 1 ends at
        /// step pct_start·total − 1, phase 2 at total − 1 (and holds its formula beyond).
        func values(base: Float, step: Int, total: Int) -> (lr: Float, momentum: Double) {
            let peak = Double(maxLR ?? base), initial = peak / divFactor, minimum = initial / finalDivFactor
            let firstEnd = pctStart * Double(total) - 1, position = Double(step)
            let rising = position <= firstEnd
            let pct = rising ? position / firstEnd : (position - firstEnd) / (Double(total - 1) - firstEnd)
            let shape = (cos(Double.pi * pct) + 1) / 2
            return rising ? (Float(Self.anneal(initial, peak, shape)), Self.anneal(maxMomentum, baseMomentum, shape))
                          : (Float(Self.anneal(peak, minimum, shape)), Self.anneal(baseMomentum, maxMomentum, shape))
        }

        /// torch's `_annealing_cos`: end + (start − end)·(cos(π·pct) + 1)/2, `shape` the last factor.
        private static func anneal(_ start: Double, _ end: Double, _ shape: Double) -> Double {
            end + (start - end) * shape
        }
    }
    public var kind: Kind
    /// Warmup length in optimizer steps (`warmup_steps`); 0 = none, or see `warmupEpochs`.
    public var warmupSteps: Int
    /// Warmup length in epochs (`warmup_epochs`), turned into steps by the run's steps per epoch.
    public var warmupEpochs: Int
    /// f: the warmup's first step trains at f·lr₀ (torch LinearLR's start_factor).
    public var warmupStartFactor: Float

    public init(kind: Kind = .constant, warmupSteps: Int = 0, warmupEpochs: Int = 0, warmupStartFactor: Float = 0) {
        self.kind = kind
        self.warmupSteps = warmupSteps
        self.warmupEpochs = warmupEpochs
        self.warmupStartFactor = warmupStartFactor
    }

    /// The warmup's length in optimizer steps for a run of `stepsPerEpoch` steps an epoch.
    public func warmupLength(stepsPerEpoch: Int) -> Int {
        warmupEpochs > 0 ? warmupEpochs * stepsPerEpoch : warmupSteps
    }

    /// Learning rate for the optimizer step `globalStep` (0-based) taken in `epoch` (0-based)
    /// of a run with `stepsPerEpoch` steps an epoch.
    public func learningRate(base: Float, epoch: Int, globalStep: Int, stepsPerEpoch: Int) -> Float {
        let warmup = warmupLength(stepsPerEpoch: stepsPerEpoch)
        if globalStep < warmup {
            return base * (warmupStartFactor + (1 - warmupStartFactor) * Float(globalStep) / Float(warmup))
        }
        let e = max(epoch - warmup / max(stepsPerEpoch, 1), 0)
        switch kind {
        case let .oneCycle(cycle):
            return cycle.values(base: base, step: globalStep, total: cycle.epochs * stepsPerEpoch).lr
        case .constant, .reduceOnPlateau: return base
        case let .step(stepSize, gamma): return base * powf(gamma, Float(e / max(stepSize, 1)))
        case let .multistep(milestones, gamma):
            var passed = 0
            for milestone in milestones where milestone <= e { passed += 1 }
            return base * powf(gamma, Float(passed))
        case let .exponential(gamma): return base * Float(pow(Double(gamma), Double(e)))
        case let .cosine(tMax, minimum):
            let progress = Double(min(e, tMax)) / Double(max(tMax, 1))
            return minimum + (base - minimum) * Float((1 + cos(Double.pi * progress)) / 2)
        }
    }

    /// The momentum one_cycle with cycle_momentum sets for step `globalStep` (SGD's, RMSprop's and
    /// LARS's momentum, Adam's and LAMB's β₁); nil for every other schedule.
    public func momentum(globalStep: Int, stepsPerEpoch: Int) -> Float? {
        guard case let .oneCycle(cycle) = kind, cycle.cycleMomentum else { return nil }
        return Float(cycle.values(base: 1, step: globalStep, total: cycle.epochs * stepsPerEpoch).momentum)
    }
}

extension LearningRateSchedule {
    /// The schedule as resolved from the config, e.g. "cosine(t_max=200, eta_min=0.0)": a
    /// checkpoint records it, so a resume under another one (a cosine whose t_max followed a
    /// changed training.epochs) is pointed out.
    public var signature: String {
        let shape: String
        switch kind {
        case .constant: shape = "constant"
        case let .step(stepSize, gamma): shape = "step(step_size=\(stepSize), gamma=\(gamma))"
        case let .multistep(milestones, gamma): shape = "multistep(milestones=\(milestones), gamma=\(gamma))"
        case let .exponential(gamma): shape = "exponential(gamma=\(gamma))"
        case let .cosine(tMax, minimum): shape = "cosine(t_max=\(tMax), eta_min=\(minimum))"
        case .reduceOnPlateau: shape = "reduce_on_plateau"
        case let .oneCycle(c):
            shape = "one_cycle(max_lr=\(c.maxLR.map { "\($0)" } ?? "lr"), epochs=\(c.epochs), pct_start=\(c.pctStart), div_factor=\(c.divFactor), "
                + "final_div_factor=\(c.finalDivFactor), cycle_momentum=\(c.cycleMomentum), base_momentum=\(c.baseMomentum), max_momentum=\(c.maxMomentum))"
        }
        let length = warmupEpochs > 0 ? "warmup_epochs=\(warmupEpochs)" : "warmup_steps=\(warmupSteps)"
        return warmupEpochs > 0 || warmupSteps > 0 ? shape + " after \(length) from \(warmupStartFactor)·lr" : shape
    }
}
