#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Rank 0's output: Keras-like epoch lines on stdout, progress within an epoch on stderr.
///
/// On a terminal the progress is one line redrawn in place with carriage returns. Anywhere else
/// (a batch job's log file, a pipe) redraws would pile up in the file, so progress is a plain
/// line every `plainProgressSeconds` instead, and only in epochs that run that long.
/// `DDP_PROGRESS=terminal` or `plain` overrides the check: under mpirun a rank's stderr is a
/// pipe whatever mpirun's own is, so launch/train passes `terminal` when it runs in one.
public final class Console {
    public enum Mode: String, Sendable {
        case terminal, plain
    }

    public let enabled: Bool
    public let mode: Mode
    public let plainProgressSeconds: Double
    private let output: FileHandle
    private let errors: FileHandle
    private static let progressWidth = 110
    private var progressShown = false
    private var plainEpoch = -1
    private var lastPlainLine = ContinuousClock.now
    /// The time plain mode's interval is measured in: the continuous clock, or a test's own.
    private let now: () -> ContinuousClock.Instant

    public init(enabled: Bool, plainProgressSeconds: Double = 30, mode: Mode = Console.detectedMode(),
                output: FileHandle = .standardOutput, errors: FileHandle = .standardError,
                now: @escaping () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.enabled = enabled
        self.mode = mode
        self.plainProgressSeconds = plainProgressSeconds
        self.output = output
        self.errors = errors
        self.now = now
    }

    /// `DDP_PROGRESS` when set to terminal or plain, else whether stderr is a terminal.
    public static func detectedMode() -> Mode {
        if let setting = ProcessInfo.processInfo.environment["DDP_PROGRESS"], let mode = Mode(rawValue: setting) { return mode }
        return isatty(STDERR_FILENO) == 1 ? .terminal : .plain
    }

    public func line(_ text: String) {
        guard enabled else { return }
        output.write(Data((text + "\n").utf8))
    }

    /// Called during an epoch (the trainer throttles terminal redraws to about ten a second).
    /// On a terminal, Keras's progress bar redrawn in place:
    ///
    ///     Epoch 3/10  412/938 [=============>................] ETA 0:04 - loss: 0.4321 - 98000 samples/s
    ///
    /// in a log, "Epoch 3/10  step 412/938  loss: 0.4321  98000 samples/s  ETA 0:04" every
    /// `plainProgressSeconds`. `eta`: seconds left in the epoch, nil before it can be told.
    func progress(epoch: Int, of epochs: Int, step: Int, of steps: Int, loss: Double, rate: Double, eta: Double? = nil) {
        guard enabled else { return }
        switch mode {
        case .terminal:
            let left = eta.map { " ETA " + Self.clock($0) } ?? ""
            let text = String(format: "Epoch %d/%d  %d/%d ", epoch, epochs, step, steps) + Self.bar(step, of: steps) + left
                + String(format: " - loss: %.4f - %.0f samples/s", loss, rate)
            errors.write(Data(("\r" + text.padding(toLength: Self.progressWidth, withPad: " ", startingAt: 0)).utf8))
            progressShown = true
        case .plain:
            let time = now()
            if epoch != plainEpoch {
                // The first call of an epoch comes a little after its start; count from here.
                plainEpoch = epoch
                lastPlainLine = time
            } else if time - lastPlainLine >= .milliseconds(Int64(plainProgressSeconds * 1000)) {
                lastPlainLine = time
                let text = String(format: "Epoch %d/%d  step %d/%d  loss: %.4f  %.0f samples/s", epoch, epochs, step, steps, loss, rate)
                errors.write(Data((text + (eta.map { "  ETA " + Self.clock($0) } ?? "") + "\n").utf8))
            }
        }
    }

    /// Keras's bar: 30 cells, '=' for the steps done, '>' at the front, '.' for the rest.
    static func bar(_ step: Int, of steps: Int) -> String {
        let width = 30, done = steps > 0 ? min(width, width * step / steps) : width
        let head = done < width ? ">" : ""
        return "[" + String(repeating: "=", count: max(done - head.count, 0)) + head
            + String(repeating: ".", count: width - max(done - head.count, 0) - head.count) + "]"
    }

    /// "0:04", "12:30", "1:02:03".
    public static func clock(_ seconds: Double) -> String {
        let total = Int(max(seconds, 0).rounded())
        let (hours, minutes, rest) = (total / 3600, total / 60 % 60, total % 60)
        return hours > 0 ? String(format: "%d:%02d:%02d", hours, minutes, rest) : String(format: "%d:%02d", minutes, rest)
    }

    /// Clears the terminal's progress line before the epoch line is printed.
    func endProgress() {
        guard enabled, progressShown else { return }
        errors.write(Data(("\r" + String(repeating: " ", count: Self.progressWidth) + "\r").utf8))
        progressShown = false
    }
}
