import _CBLAS
import Foundation

/// The OpenBLAS kernel table a process runs its GEMMs with, and the one ddp asks for: the
/// best that this CPU's features allow, whatever its model number.
///
/// A DYNAMIC_ARCH OpenBLAS (Debian's is one) picks its kernel table once, as the library
/// loads: from `OPENBLAS_CORETYPE` if set, else from the CPU's vendor, family and model
/// number. A model newer than the library falls back to its oldest x86-64 table: Debian's
/// 0.3.21 runs Prescott's SSE3 kernels on Intel's Emerald Rapids (family 6, model 207), and
/// ddp trained 3.4× slower there than with the AVX-512 kernels the CPU supports. So ddp reads
/// the features instead (`best(for:)`), and where the library's pick is weaker, its commands
/// that compute re-execute themselves once with `OPENBLAS_CORETYPE` naming the better table
/// (the library reads the variable only as it loads).
///
/// The rule, x86-64 (the flags of /proc/cpuinfo, which the kernel clears for state the OS
/// does not save, so a flag seen is an instruction usable):
/// - AMX (amx_tile, amx_bf16) with AVX-512 BF16 → SapphireRapids;
/// - AVX-512 F, BW, VL, DQ with AVX512_BF16 → Cooperlake;
/// - AVX-512 F, BW, VL, DQ → SkylakeX;
/// - AVX2 and FMA → Haswell; AVX → Sandybridge;
/// - AMD Zen 4 (family 25 with AVX-512), with OpenBLAS before 0.3.34 → Haswell: those
///   releases run their Intel AVX-512 tables there, blocked for Intel's caches on a core that executes each 512-bit
///   operation as two halves, and Haswell's AVX2 table ran ddp 1.030× faster in one process
///   and 1.054× at np = 2 (docs/PERFORMANCE.md, 'OpenBLAS kernel tables by CPU features').
///
/// aarch64 (the Features line): SVE2 → NeoverseN2 (Neoverse N2/V2, Grace, Graviton 4: SVE at
/// 128 bits), SVE → NeoverseV1 (Graviton 3), dot product and LSE atomics (Armv8.2) →
/// NeoverseN1 (Graviton 2, Ampere Altra).
///
/// Where tables tie, the features decide. SkylakeX's and Cooperlake's tables trained equally
/// fast on Emerald Rapids (77.3k and 76.0k samples/s; docs/PERFORMANCE.md, 'OpenBLAS kernel
/// tables by CPU features') but round differently (the weights differ), so ddp asks
/// for the table the features name, and hosts with the same features run the same one.
/// SapphireRapids' table is Cooperlake's plus AMX bf16 kernels (OpenBLAS's
/// KERNEL.SAPPHIRERAPIDS includes KERNEL.COOPERLAKE): one tier for fp32 GEMMs, so a library's
/// Cooperlake on an AMX host is kept, and a library without the SapphireRapids table
/// (Debian's 0.3.21 loads Cooperlake's for the name) loses nothing.
///
/// A table ddp does not rank (`tier` is nil: a vendor-tuned one such as arm64's tsv110) is
/// kept. Any `OPENBLAS_CORETYPE` the user sets wins. Where ddp cannot do better than a weak
/// pick (a library built without DYNAMIC_ARCH, an architecture it has no rule for, an
/// unreadable /proc/cpuinfo, a library without the table asked for), `Status.warning` says
/// so, and rank 0 prints it. Kernels
/// change the rounding of GEMM sums, not their meaning; metrics.jsonl's end line records the
/// table a run used (`blas_core`) and who chose it (`blas_core_chosen_by`).
public enum BLASKernels {
    /// OpenBLAS's name for the kernel table this process runs, e.g. "Haswell" or "Cooperlake".
    public static var current: String? {
        openblas_get_corename().map { String(cString: $0) }
    }

    /// The loaded OpenBLAS as the rule reads it: its own pick, whether it can load another
    /// table, and its version.
    public struct Library: Sendable {
        public var pick: String
        /// Built with DYNAMIC_ARCH: `OPENBLAS_CORETYPE` can choose its table.
        public var isDynamic: Bool
        /// [major, minor, patch] from its configuration string; nil where it names none.
        public var version: [Int]?

        public init(pick: String, isDynamic: Bool = true, version: [Int]? = nil) {
            self.pick = pick
            self.isDynamic = isDynamic
            self.version = version
        }

        /// From `openblas_get_config()`, e.g. "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Prescott MAX_THREADS=64".
        public init(pick: String, config: String) {
            let words = config.split(separator: " ")
            let numbers = words.count > 1 && words[0] == "OpenBLAS" ? words[1].split(separator: ".").compactMap { Int($0) } : []
            self.init(pick: pick, isDynamic: words.contains("DYNAMIC_ARCH"), version: numbers.count == 3 ? numbers : nil)
        }

        /// Older than `other` ([major, minor, patch]); an unknown version counts as older.
        func older(than other: [Int]) -> Bool { version.map { $0.lexicographicallyPrecedes(other) } ?? true }
    }

    /// This process's library; nil where it names no table.
    /// `openblas_get_config()`: version, build options and the table the library picked.
    public static var libraryConfig: String? { openblas_get_config().map { String(cString: $0) } }

    public static var library: Library? {
        guard let pick = current else { return nil }
        return Library(pick: pick, config: openblas_get_config().map { String(cString: $0) } ?? "")
    }

    /// The variable through which ddp tells its re-executed image what the library picked on
    /// its own; its presence beside `OPENBLAS_CORETYPE` marks the choice as ddp's.
    public static let libraryPickVariable = "DDP_OPENBLAS_PICK"

    /// Who chose the table a process runs.
    public enum ChosenBy: String, Codable, Sendable {
        /// ddp, from the CPU's features.
        case ddp
        /// The user, through `OPENBLAS_CORETYPE`.
        case user
        /// The library, from the CPU's model number.
        case openblas
    }

    /// The kernels this process runs, who chose them, and what is wrong with them if anything.
    public struct Status: Equatable, Sendable {
        public var core: String
        public var chosenBy: ChosenBy
        /// The table the library picked by itself, where ddp replaced it.
        public var libraryPick: String?
        /// The features that decided ddp's choice, e.g. "AVX512_BF16".
        public var reason: String?
        /// The user's `OPENBLAS_CORETYPE`.
        public var asked: String?
        public var warning: String?

        /// One line for the run header.
        public var line: String {
            switch chosenBy {
            case .ddp: "kernels: OpenBLAS \(core), chosen by ddp for this CPU's \(reason ?? "features") (OpenBLAS alone picked \(libraryPick ?? "?"))"
            case .user where asked?.lowercased() == core.lowercased(): "kernels: OpenBLAS \(core), as OPENBLAS_CORETYPE asks"
            case .user: "kernels: OpenBLAS \(core), which OpenBLAS loaded for OPENBLAS_CORETYPE=\(asked ?? "")"
            case .openblas: "kernels: OpenBLAS \(core)"
            }
        }
    }

    /// The host as the rule reads it: the architecture and the first processor of
    /// /proc/cpuinfo (every core of a machine ddp runs on is alike).
    public struct Host: Sendable {
        public var architecture: String
        public var vendor: String?
        public var family: Int?
        /// x86-64's `flags`, aarch64's `Features`.
        public var features: Set<Substring>

        public init(architecture: String, cpuinfo: String) {
            self.architecture = architecture
            var fields: [String: String] = [:]
            for line in cpuinfo.split(separator: "\n", omittingEmptySubsequences: false) {
                if line.trimmingCharacters(in: .whitespaces).isEmpty { if fields.isEmpty { continue } else { break } }
                guard let colon = line.firstIndex(of: ":") else { continue }
                let key = line[..<colon].trimmingCharacters(in: .whitespaces)
                fields[key] = fields[key] ?? line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            vendor = fields["vendor_id"]
            family = fields["cpu family"].flatMap { Int($0) }
            features = Set((fields["flags"] ?? fields["Features"] ?? "").split(separator: " "))
        }

        /// This machine; nil where /proc/cpuinfo cannot be read.
        public static var here: Host? {
            guard let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
            return Host(architecture: machineArchitecture, cpuinfo: cpuinfo)
        }

        /// `uname -m`.
        public static var machineArchitecture: String {
            var name = utsname()
            uname(&name)
            return withUnsafeBytes(of: &name.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }

        func has(_ names: String...) -> Bool { names.allSatisfy { features.contains(Substring($0)) } }
    }

    /// A table and why: `overrides` marks a choice that replaces stronger-looking tables too
    /// (Zen 4's), not only weaker ones.
    public struct Target: Equatable, Sendable {
        public var core: String
        public var reason: String
        public var overrides: Bool

        public init(core: String, reason: String, overrides: Bool = false) {
            self.core = core
            self.reason = reason
            self.overrides = overrides
        }
    }

    /// The OpenBLAS release whose blocking is tuned for Zen 4 (pull request 5868): from it on,
    /// the Zen 4 rule no longer applies, as it was not measured there.
    static let zen4TunedRelease = [0, 3, 34]

    /// The best table `host`'s features allow; nil where ddp has no rule (an unknown
    /// architecture, an x86-64 CPU without AVX, an aarch64 core before Armv8.2).
    public static func best(for host: Host, library: Library = Library(pick: "")) -> Target? {
        switch host.architecture {
        case "x86_64":
            let avx512 = host.has("avx512f", "avx512bw", "avx512vl", "avx512dq")
            if host.vendor == "AuthenticAMD", host.family == 25, host.has("avx512f"), library.older(than: zen4TunedRelease) {
                return Target(core: "Haswell", reason: "Zen 4 cores (AMD family 25 with AVX-512)", overrides: true)
            }
            if avx512, host.has("avx512_bf16", "amx_tile", "amx_bf16") { return Target(core: "SapphireRapids", reason: "AMX") }
            if avx512, host.has("avx512_bf16") { return Target(core: "Cooperlake", reason: "AVX512_BF16") }
            if avx512 { return Target(core: "SkylakeX", reason: "AVX-512") }
            if host.has("avx2", "fma") { return Target(core: "Haswell", reason: "AVX2 and FMA") }
            if host.has("avx") { return Target(core: "Sandybridge", reason: "AVX") }
            return nil
        case "aarch64", "arm64":
            if host.has("sve2") { return Target(core: "NeoverseN2", reason: "SVE2") }
            if host.has("sve") { return Target(core: "NeoverseV1", reason: "SVE") }
            if host.has("asimddp", "atomics") { return Target(core: "NeoverseN1", reason: "dot product and LSE atomics") }
            return nil
        default:
            return nil
        }
    }

    /// The instruction tier of a table as OpenBLAS names it (case-insensitive): 0 for the
    /// baseline tables, nil for a name ddp does not rank (a vendor-tuned table such as arm64's
    /// tsv110, thunderx3t110 or vortex, whose pick ddp keeps).
    public static func tier(_ core: String) -> Int? {
        switch core.lowercased() {
        case "prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "opteron", "opteron_sse3", "barcelona", "bobcat",
             "katmai", "coppermine", "northwood", "banias", "armv8", "cortexa53", "cortexa55", "cortexa57", "cortexa72", "cortexa73": 0
        case "sandybridge", "bulldozer", "piledriver", "steamroller", "excavator": 1
        case "haswell", "zen": 2
        case "skylakex": 3
        case "cooperlake", "sapphirerapids": 4
        case "neoversen1": 1
        case "neoversev1", "neoversen2", "neoversev2", "a64fx": 2
        default: nil
        }
    }

    /// What ddp does about the kernels before anything else runs.
    public enum Decision: Equatable, Sendable {
        /// Re-execute with `OPENBLAS_CORETYPE` set to this table.
        case reexecute(Target)
        /// Go on with the library's table, and with this warning if any.
        case keep(warning: String?)
    }

    /// The decision for a process with this environment, library and host (nil: /proc/cpuinfo
    /// could not be read).
    public static func decide(environment: [String: String], library: Library, host: Host?) -> Decision {
        let pick = library.pick
        if let asked = environment["OPENBLAS_CORETYPE"] {
            // ddp's own earlier choice, in its re-executed image: check the library honoured it.
            guard environment[libraryPickVariable] != nil, let loaded = tier(pick), let wanted = tier(asked), loaded < wanted else {
                return .keep(warning: nil)
            }
            return .keep(warning: "ddp asked OpenBLAS for its \(asked) kernels, which this library does not have: "
                         + "it runs \(pick)'s, and GEMMs may run slower than this CPU allows")
        }
        guard let host else {
            guard tier(pick) == 0 else { return .keep(warning: nil) }
            return .keep(warning: "/proc/cpuinfo cannot be read, so ddp cannot tell which kernels this CPU allows: it runs "
                         + "OpenBLAS's own pick, \(pick), its most basic (set OPENBLAS_CORETYPE to choose another)")
        }
        guard ["x86_64", "aarch64", "arm64"].contains(host.architecture) else {
            return .keep(warning: "ddp has no kernel rule for \(host.architecture) CPUs: it runs OpenBLAS's own pick, \(pick) "
                         + "(set OPENBLAS_CORETYPE to choose another)")
        }
        guard let target = best(for: host, library: library), target.core.lowercased() != pick.lowercased(),
              let current = tier(pick), let better = tier(target.core) else { return .keep(warning: nil) }
        let weaker = current < better
        guard weaker || (target.overrides && current > better) else { return .keep(warning: nil) }
        guard library.isDynamic else {
            guard weaker else { return .keep(warning: nil) }
            return .keep(warning: "OpenBLAS here was built for \(pick) alone (no DYNAMIC_ARCH), so ddp cannot load the \(target.core) "
                         + "kernels this CPU's \(target.reason) allow: GEMMs may run several times slower. Install an OpenBLAS "
                         + "built with DYNAMIC_ARCH (Debian's libopenblas0-pthread) or for this CPU")
        }
        return .reexecute(target)
    }

    /// `decide` for this process; nil where the library names no table.
    public static var decisionHere: Decision? {
        guard let library else { return nil }
        return decide(environment: ProcessInfo.processInfo.environment, library: library, host: Host.here)
    }

    /// The table this process runs and who chose it; nil where the library names no table.
    public static var statusHere: Status? {
        guard let core = current else { return nil }
        let environment = ProcessInfo.processInfo.environment
        var warning: String?
        if case let .keep(found)? = decisionHere { warning = found }
        guard environment["OPENBLAS_CORETYPE"] != nil else {
            return Status(core: core, chosenBy: .openblas, warning: warning)
        }
        guard let pick = environment[libraryPickVariable] else {
            return Status(core: core, chosenBy: .user, asked: environment["OPENBLAS_CORETYPE"], warning: warning)
        }
        let reason = Host.here.flatMap { host in library.flatMap { best(for: host, library: $0)?.reason } }
        return Status(core: core, chosenBy: .ddp, libraryPick: pick, reason: reason, warning: warning)
    }
}
