import Dispatch
import Foundation

/// Whether this machine gives N busy threads N whole cores right now, as a fraction: the same
/// loop timed on one thread alone, then on N threads at once; 1 means each of the N ran as fast
/// as the one alone (the better of two tries: a thread that starts late costs a few percent). A virtual machine whose host lends a vCPU to someone else cannot
/// see it (Linux counts no steal time there), but its loops slow down. `ddp bench` runs this
/// before and after every round and leaves out rounds where cores went missing: on the 2-core
/// development VM, rounds where one process with two BLAS threads fell below one thread's
/// speed (45k against 68k samples/s) came with np = 2 at 80k instead of 110–130k.
enum CoreCheck {
    /// Iterations of the loop: about 0.1 s on one core of the development machine. Each is a
    /// floating-point multiply and add on the last result, which the compiler may not reorder
    /// (an integer recurrence it can: one ran 60M steps in 8 ms).
    static let iterations = 60_000_000

    static func availability(threads: Int) -> Double {
        guard threads > 1 else { return 1 }
        var best = 0.0
        for _ in 0..<2 {
            let alone = timeLoops(threads: 1)
            let together = timeLoops(threads: threads)
            best = max(best, together > 0 ? min(1, alone / together) : 1)
        }
        return best
    }

    /// Each thread's seconds, written by that thread only (so unchecked Sendable is safe).
    private final class Timings: @unchecked Sendable {
        let seconds: UnsafeMutableBufferPointer<Double>
        init(_ count: Int) {
            seconds = .allocate(capacity: count)
            seconds.initialize(repeating: 0)
        }
        deinit { seconds.deallocate() }
    }

    /// Wall seconds until the slowest of `threads` threads (started together) has run the loop.
    private static func timeLoops(threads: Int) -> Double {
        let timings = Timings(threads)
        let finished = DispatchSemaphore(value: 0)
        let go = DispatchSemaphore(value: 0)
        for thread in 0..<threads {
            Thread.detachNewThread {
                go.wait()
                let began = DispatchTime.now().uptimeNanoseconds
                var x = 1 + Double(thread)
                for _ in 0..<iterations { x = x * 0.999_999_9 + 1e-9 }
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - began) / 1e9
                // The loop's result decides the stored sign, so the optimizer cannot drop the loop.
                timings.seconds[thread] = x == 0 ? -elapsed : elapsed
                finished.signal()
            }
        }
        for _ in 0..<threads { go.signal() }
        for _ in 0..<threads { finished.wait() }
        return timings.seconds.map(abs).max() ?? 0
    }
}
