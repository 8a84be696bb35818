import Dispatch
import Foundation
import _CAffinity

/// Whether this machine gives N busy threads N whole cores right now, as a fraction: the same
/// loop timed on one thread alone, then on N threads at once; 1 means each of the N ran as fast
/// as the one alone (the better of two tries: a thread that starts late costs a few percent).
/// A virtual machine whose host lends a vCPU to someone else cannot see it (Linux counts no
/// steal time there), but its loops slow down. `ddp bench` runs this
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

extension CoreCheck {
    /// How much slower one core reads memory another core has just written than memory it has
    /// just written itself: 512 KiB, the first two CPUs this process may run on, the median of
    /// 9 tries. A virtual machine's host can move its vCPUs between cores that share a cache and
    /// cores that do not, within seconds: on the AMD development VM this read 1.00–1.01 while
    /// np = 2 trained at 117–124k samples/s and 1.41–1.90 while it trained at 79–84k
    /// (docs/PERFORMANCE.md, 'The bench's core-layout check (CoreCheck, ScalingBench)').
    /// `ddp bench` checks it around every multi-core run.
    /// Returns 1 where there are not two CPUs to pin threads to.
    static func crossCoreSlowdown() -> Double {
        var cpus = [Int32](repeating: 0, count: 2)
        guard ddp_allowed_cpus(&cpus, 2) == 2 else { return 1 }
        let writer = cpus[0], reader = cpus[1]
        let probe = CrossCoreProbe(floats: 1 << 17)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            probe.measure(reader: reader, writer: writer, tries: 9)
            done.signal()
        }
        done.wait()
        return probe.medianRatio
    }
}

/// One buffer, written on demand by a helper thread pinned to another core and read (timed) by
/// the caller's thread. Semaphores hand it over, so only the reads are timed.
private final class CrossCoreProbe: @unchecked Sendable {
    private let buffer: UnsafeMutableBufferPointer<Float>
    private var job: (() -> Void)?
    private var running = true
    private let start = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private var helperCore: Int32 = -1
    private var sink: Float = 0
    private var ratios: [Double] = []
    /// The median of `measure`'s ratios (1 before it ran).
    var medianRatio: Double { ratios.isEmpty ? 1 : ratios.sorted()[ratios.count / 2] }

    init(floats: Int) {
        buffer = .allocate(capacity: floats)
        buffer.initialize(repeating: 0)
    }
    deinit { buffer.deallocate() }

    /// On the calling thread, pinned to `reader`: `tries` times, the time to read the buffer
    /// after a thread pinned to `writer` wrote it, over the time after this thread wrote it.
    func measure(reader: Int32, writer: Int32, tries: Int) {
        guard ddp_pin_thread(reader) == 0 else { return }
        for _ in 0..<tries {
            onCore(writer) { self.write(seed: 1) }
            let other = timedRead()
            write(seed: 2)
            let own = timedRead()
            if own > 0 { ratios.append(other / own) }
        }
        stop()
    }

    /// Runs `body` on a thread pinned to `core` and waits for it.
    private func onCore(_ core: Int32, _ body: @escaping () -> Void) {
        if helperCore < 0 {
            helperCore = core
            Thread.detachNewThread { [self] in
                _ = ddp_pin_thread(core)
                while true {
                    start.wait()
                    guard running, let job else { finished.signal(); return }
                    job()
                    finished.signal()
                }
            }
        }
        job = body
        start.signal()
        finished.wait()
    }

    private func stop() {
        guard helperCore >= 0 else { return }
        running = false
        start.signal()
        finished.wait()
    }

    private func write(seed: Float) {
        for i in buffer.indices { buffer[i] = seed + Float(i & 1023) }
    }

    /// Seconds to sum the buffer.
    private func timedRead() -> Double {
        let began = DispatchTime.now().uptimeNanoseconds
        var sum = SIMD8<Float>()
        let base = UnsafeRawPointer(buffer.baseAddress!)
        var i = 0
        while i + 8 <= buffer.count {
            sum += base.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
            i += 8
        }
        sink += sum.sum()
        return Double(DispatchTime.now().uptimeNanoseconds - began) / 1e9
    }
}
