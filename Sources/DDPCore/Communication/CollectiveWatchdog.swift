import _CMPI
import _CWatchdog

/// No rank waits forever in a collective: a watchdog thread per rank (C target `_CWatchdog`)
/// ends the job when one blocking MPI call has waited longer than `distributed.timeout_seconds`.
///
/// A lost host sends no reset: without it every other rank would wait in its next collective
/// until the allocation's wall-clock limit. Past the deadline the rank prints which call, step,
/// rank and host were waiting, and ends the job with `MPI_Abort` (exit status 124, as timeout(1)),
/// then `_exit`s if the abort hangs too (it can, when it must reach the lost host).
public enum CollectiveWatchdog {
    /// The exit status of a job the watchdog ended.
    public static let exitCode = Int32(DDP_WATCHDOG_EXIT_CODE)

    /// Records the training position the watchdog's message names (1-based epoch and step).
    /// Two relaxed atomic stores: cheap enough for every step.
    @inline(__always)
    public static func mark(epoch: Int, step: Int) {
        ddp_watchdog_set_step(Int64(epoch), Int64(step))
    }
}

extension MPICommunicator {
    /// Starts this process's watchdog (once per process; a later call keeps the first timeout).
    /// Nothing to watch on one rank.
    public func startWatchdog(timeoutSeconds: Double) throws {
        guard size > 1 else { return }
        let code = ddp_watchdog_start(timeoutSeconds, Int32(rank), Int32(size)) { code in _ = cmpi_abort(code) }
        guard code == 0 else {
            throw DDPError(.communication, "rank \(rank) could not start the collective watchdog thread (errno \(code))")
        }
    }

    /// Runs one blocking MPI call under the watchdog: every blocking call in MPICommunicator goes
    /// through here. `call` and `unit` are static strings the watchdog keeps pointers to, so a call
    /// costs a clock read and a few atomic stores: no allocation, no string.
    /// Example: `watched("MPI_Allreduce", n, "floats") { cmpi_allreduce_sum_float(base, count) }`.
    @inline(__always)
    func watched(_ call: StaticString, _ count: Int, _ unit: StaticString, _ body: () -> Int32) -> Int32 {
        ddp_watchdog_enter(Self.cString(call), Int64(count), Self.cString(unit))
        defer { ddp_watchdog_leave() }
        return body()
    }

    @inline(__always)
    private static func cString(_ text: StaticString) -> UnsafePointer<CChar> {
        UnsafeRawPointer(text.utf8Start).assumingMemoryBound(to: CChar.self)
    }
}
