#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Learning-rate schedules as pure functions of (epoch, global step), so a resumed run needs no
/// schedule state beyond the step counter it already checkpoints; reduce_on_plateau is the
/// exception, its lr decided at epoch ends from the monitored value (`ReduceLROnPlateau`,
/// whose state the checkpoint keeps).
///
/// - constant: lr₀
/// - step:   lr₀·γ^⌊epoch/step_size⌋                (torch StepLR stepped once per epoch)
/// - cosine: η_min + (lr₀ − η_min)(1 + cos(π·epoch/T_max))/2   (torch CosineAnnealingLR per epoch),
///           held at η_min after T_max (torch would climb back up: it is periodic)
/// - reduce_on_plateau: the lr `ReduceLROnPlateau` holds, passed in as `base`
/// Any of them may add a linear warmup over the first `warmup_steps` optimizer steps:
/// lr·min(1, (step + 1)/warmup_steps); `type: warmup` is warmup followed by constant. With
/// reduce_on_plateau the warmup climbs to the plateau's lr, and a reduction decided during
/// the warmup lowers what it climbs to.
public struct LearningRateSchedule: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case constant
        case step(stepSize: Int, gamma: Float)
        case cosine(tMax: Int, minimum: Float)
        case reduceOnPlateau(ReduceLROnPlateauConfig)
    }
    public var kind: Kind
    public var warmupSteps: Int

    public init(kind: Kind = .constant, warmupSteps: Int = 0) {
        self.kind = kind
        self.warmupSteps = warmupSteps
    }

    /// Learning rate for the optimizer step `globalStep` (0-based) taken in `epoch` (0-based).
    public func learningRate(base: Float, epoch: Int, globalStep: Int) -> Float {
        var lr: Float
        switch kind {
        case .constant, .reduceOnPlateau: lr = base
        case let .step(stepSize, gamma): lr = base * powf(gamma, Float(epoch / max(stepSize, 1)))
        case let .cosine(tMax, minimum):
            let progress = Double(min(epoch, tMax)) / Double(max(tMax, 1))
            lr = minimum + (base - minimum) * Float((1 + cos(Double.pi * progress)) / 2)
        }
        if warmupSteps > 0 {
            lr *= min(1, Float(globalStep + 1) / Float(warmupSteps))
        }
        return lr
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
        case let .cosine(tMax, minimum): shape = "cosine(t_max=\(tMax), eta_min=\(minimum))"
        case .reduceOnPlateau: shape = "reduce_on_plateau"
        }
        return warmupSteps > 0 ? shape + " after warmup_steps=\(warmupSteps)" : shape
    }
}
