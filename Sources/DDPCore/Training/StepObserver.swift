import Foundation
import _CPreemption

/// Everything that watches a training step without taking part in its arithmetic: the
/// collective watchdog's position, the step-time breakdown (`StepTimes`), the trace's spans,
/// TensorBoard's per-step scalars, the progress line and the preemption flag. `TrainStep`
/// tells it where each phase ends; the epoch loop tells it where a step begins and ends.
///
/// Allocated once per run; every call is a few clock reads, nil checks and stores (the trace
/// and the step scalars write into buffers allocated once), so observing costs no allocation.
final class StepObserver {
    /// The step's phases, as `TrainStep` runs them.
    enum Phase {
        /// Gather, normalize and augment this rank's rows (and prefetch the next step's).
        case data
        /// Forward and loss.
        case forward
        /// Backward, with whatever gradient reduction it starts.
        case backward
        /// The gradient sync's reduction and the update (penalties, clipping, optimizer).
        case update
    }

    let communicator: Communicator
    let console: Console
    /// Set with `TrainOptions.trace`; every hook below is a nil check otherwise.
    var trace: TraceRecorder?
    /// `logging.tensorboard_every_steps` > 0, on rank 0.
    var stepScalars: TensorBoardStepWriter?
    /// The current epoch's breakdown, started afresh by `epochBegins`.
    private(set) var times: StepTimes
    private var phaseStart = ContinuousClock.now
    private var traceStart = 0.0
    private var epochStart = ContinuousClock.now
    private var lastProgress = ContinuousClock.now
    /// The epoch's first step in this process (later than 0 after a mid-epoch resume).
    private var firstStep = 0

    init(communicator: Communicator, console: Console) {
        self.communicator = communicator
        self.console = console
        times = StepTimes(communicator)
    }

    func epochBegins(firstStep: Int) {
        times = StepTimes(communicator)
        epochStart = ContinuousClock.now
        lastProgress = epochStart
        self.firstStep = firstStep
    }

    /// Seconds since `epochBegins`.
    var epochSeconds: Double { (ContinuousClock.now - epochStart).seconds }

    /// `epoch` and `step` 0-based; the watchdog names them 1-based.
    @inline(__always)
    func stepBegins(epoch: Int, step: Int) {
        CollectiveWatchdog.mark(epoch: epoch + 1, step: step + 1)
        phaseStart = ContinuousClock.now
        if let trace { traceStart = trace.now() }
    }

    /// `data` time is the gather's, `compute` forward + backward, `update` the sync and the
    /// optimizer, each without the time inside collectives (see `StepTimes`).
    @inline(__always)
    func ended(_ phase: Phase) {
        switch phase {
        case .data:
            phaseStart = times.mark(phaseStart, communicator, into: .data)
            record(.data)
        case .forward:
            record(.forward)
        case .backward:
            phaseStart = times.mark(phaseStart, communicator, into: .compute)
            record(.backward)
        case .update:
            phaseStart = times.mark(phaseStart, communicator, into: .update, gradientSync: true)
            record(.update)
        }
    }

    @inline(__always)
    private func record(_ span: TraceRecorder.Span) {
        guard let trace else { return }
        trace.record(span, since: traceStart)
        traceStart = trace.now()
    }

    /// Whether this process received a preemption signal (SIGTERM, SIGUSR1, …): the sync
    /// carries it to every rank with the step's totals.
    @inline(__always)
    var preemptionRequested: Bool { ddp_preemption_signal() != 0 }

    /// After the update: the step's scalars, and the progress display from the first step on,
    /// redrawn about ten times a second (in a log the console prints one line per
    /// `logging.progress_seconds`), with the epoch's ETA from this process's steps so far.
    func stepEnded(epoch: Int, of epochs: Int, step: Int, of steps: Int, globalStep: Int, totals: StepTotals,
                   lr: Float, running: RunningSums) throws {
        try stepScalars?.stepEnded(globalStep, loss: totals.lossSum / totals.samples + totals.penalty, lr: lr)
        guard console.enabled else { return }
        let now = ContinuousClock.now
        guard step == firstStep || now - lastProgress >= .milliseconds(100) else { return }
        lastProgress = now
        let elapsed = (now - epochStart).seconds, taken = step + 1 - firstStep
        console.progress(epoch: epoch + 1, of: epochs, step: step + 1, of: steps, loss: running.lossSum / running.samples,
                         rate: running.samples / max(elapsed, 1e-9), eta: elapsed / Double(taken) * Double(steps - step - 1))
    }
}

/// An epoch's running totals over the steps taken so far (on resume, from the checkpoint's
/// partial epoch on).
struct RunningSums {
    var lossSum = 0.0
    var correct = 0.0
    var samples = 0.0

    init() {}

    init(_ partial: CheckpointState.PartialEpoch?) {
        lossSum = partial?.lossSum ?? 0
        correct = partial?.correct ?? 0
        samples = partial?.samples ?? 0
    }

    /// The loss a step adds: its per-sample losses and, per sample, the weight penalty.
    mutating func add(_ totals: StepTotals) {
        lossSum += totals.lossSum + totals.penalty * totals.samples
        correct += totals.correct
        samples += totals.samples
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

extension Duration {
    /// The duration in seconds, as the metrics record them.
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) * 1e-18
    }
}
