#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// `ddp train --trace`: a timeline of every rank's steps as Chrome trace-event JSON
/// (RUN_DIR/trace.json, which Perfetto and chrome://tracing load), one track per rank.
///
/// Each rank records complete spans ("ph": "X") into a buffer allocated once: four doubles a
/// span (kind, start µs, duration µs, bytes), the start read from CLOCK_REALTIME so the ranks'
/// tracks line up (on one node exactly; across nodes as well as their clocks agree). At the end
/// of each epoch the ranks' buffers are gathered to rank 0 (one MPI_Gather of bytes), which
/// appends them to the file. Spans nest by time on a track: data, forward, backward and update
/// per step, every collective inside them with its bytes, validation and checkpoint per epoch.
/// Off (the default), nothing is recorded: each hook is one nil check.
public final class TraceRecorder {
    public enum Span: Int, CaseIterable, Sendable {
        case data, forward, backward, update, validation, checkpoint
        case allreduce, reduceScatterStart, reductionsWait, allgather, broadcast, barrier, gather, scatter

        /// The span's name in the trace; for a collective, the MPI call the watchdog names too.
        var name: StaticString {
            switch self {
            case .data: "data"
            case .forward: "forward"
            case .backward: "backward"
            case .update: "update"
            case .validation: "validation"
            case .checkpoint: "checkpoint"
            case .allreduce: "MPI_Allreduce"
            case .allgather: "MPI_Allgather"
            case .broadcast: "MPI_Bcast"
            case .barrier: "MPI_Barrier"
            case .gather: "MPI_Gather"
            case .scatter: "MPI_Scatter"
            case .reduceScatterStart: "MPI_Ireduce_scatter"
            case .reductionsWait: "MPI_Waitall"
            }
        }
        var category: String { rawValue >= Span.allreduce.rawValue ? "collective" : "step" }
    }

    static let fields = 4
    /// Spans one rank can hold between two flushes; more are counted and dropped.
    public let capacity: Int
    private let events: UnsafeMutableBufferPointer<Double>
    private var count = 0
    private var dropped = 0
    public let path: String
    private var wroteHeader = false
    private var wroteEvent = false

    /// `spansPerEpoch`: room for one epoch's spans (the trainer asks for its steps × 32).
    public init(path: String, spansPerEpoch: Int) {
        self.path = path
        capacity = max(spansPerEpoch, 64)
        events = .allocate(capacity: capacity * Self.fields)
        events.initialize(repeating: -1)
    }

    deinit { events.deallocate() }

    /// Microseconds since 1970 (CLOCK_REALTIME), the trace's time base.
    @inline(__always)
    public func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Double(time.tv_sec) * 1e6 + Double(time.tv_nsec) * 1e-3
    }

    /// A span of `kind` from `start` (a `now()` reading) to now.
    @inline(__always)
    public func record(_ kind: Span, since start: Double, bytes: Int = 0) {
        let end = now()
        guard count < capacity else { dropped += 1; return }
        let slot = events.baseAddress! + count * Self.fields
        slot[0] = Double(kind.rawValue)
        slot[1] = start
        slot[2] = end - start
        slot[3] = Double(bytes)
        count += 1
    }

    /// Collective: gathers every rank's spans to rank 0, which appends them to the file; every
    /// rank's buffer starts empty again. Done once an epoch (and at the end).
    public func flush(_ communicator: Communicator) throws {
        let size = communicator.size
        let bytes = capacity * Self.fields * MemoryLayout<Double>.stride
        var all = [Double](repeating: 0, count: communicator.isRoot ? size * capacity * Self.fields : 0)
        // The header slot of the last event carries how many this rank dropped.
        if count < capacity {
            let slot = events.baseAddress! + count * Self.fields
            slot[0] = -2
            slot[1] = Double(dropped)
        }
        try all.withUnsafeMutableBytes { full in
            try communicator.gather(bytes: UnsafeRawBufferPointer(start: events.baseAddress, count: bytes), into: full.baseAddress, root: 0)
        }
        for index in 0..<(count * Self.fields) { events[index] = -1 }
        if count < capacity { events[count * Self.fields] = -1 }
        count = 0
        dropped = 0
        guard communicator.isRoot else { return }
        var text = ""
        if !wroteHeader {
            text += "[\n"
            for rank in 0..<size {
                text += #"{"name":"process_name","ph":"M","pid":\#(rank),"tid":0,"args":{"name":"rank \#(rank)"}},"# + "\n"
                text += #"{"name":"process_sort_index","ph":"M","pid":\#(rank),"tid":0,"args":{"sort_index":\#(rank)}}"#
                text += rank + 1 < size ? ",\n" : ""
            }
            wroteEvent = true
            wroteHeader = true
        }
        for rank in 0..<size {
            let base = rank * capacity * Self.fields
            for event in 0..<capacity {
                let slot = base + event * Self.fields
                let kind = Int(all[slot])
                if kind == -2 {
                    if all[slot + 1] > 0 {
                        let last = event > 0 ? all[slot - Self.fields + 1] + all[slot - Self.fields + 2] : 0
                        text += (wroteEvent ? ",\n" : "") + #"{"name":"spans dropped","ph":"i","s":"p","pid":\#(rank),"tid":0,"ts":\#(String(format: "%.3f", last)),"args":{"count":\#(Int(all[slot + 1]))}}"#
                        wroteEvent = true
                    }
                    break
                }
                guard kind >= 0, let span = Span(rawValue: kind) else { break }
                var line = #"{"name":"\#(span.name)","cat":"\#(span.category)","ph":"X","pid":\#(rank),"tid":0,"#
                line += #""ts":\#(String(format: "%.3f", all[slot + 1])),"dur":\#(String(format: "%.3f", max(all[slot + 2], 0)))"#
                if span.category == "collective" { line += #","args":{"bytes":\#(Int(all[slot + 3]))}"# }
                line += "}"
                text += (wroteEvent ? ",\n" : "") + line
                wroteEvent = true
            }
        }
        try append(text)
    }

    /// Rank 0: closes the JSON array, so the file is a complete JSON document.
    public func close(_ communicator: Communicator) throws {
        try flush(communicator)
        if communicator.isRoot { try append("\n]\n") }
    }

    private func append(_ text: String) throws {
        guard let file = fopen(path, wroteHeaderOnDisk ? "a" : "w") else {
            throw DDPError(.io, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
        wroteHeaderOnDisk = true
        defer { fclose(file) }
        guard fputs(text, file) >= 0 else { throw DDPError(.io, "cannot write \(path): \(String(cString: strerror(errno)))") }
    }

    private var wroteHeaderOnDisk = false
}
