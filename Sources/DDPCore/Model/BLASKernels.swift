import CBLAS
import Foundation

/// The OpenBLAS kernels a process runs its GEMMs with, and the one host where ddp prefers
/// other kernels than OpenBLAS's own pick.
///
/// A DYNAMIC_ARCH OpenBLAS (Debian's is one) picks its kernel table once, when the library
/// loads: from `OPENBLAS_CORETYPE` if set, else from CPUID. On AMD Zen 4 (family 19h with
/// AVX-512) OpenBLAS up to 0.3.33 picks the table written for Intel's Cooperlake (or SkylakeX):
/// AVX-512 kernels with blocking tuned for Intel's caches, on a core that executes each 512-bit
/// operation as two 256-bit halves (0.3.34 re-tunes that blocking on Zen 4 hosts, OpenBLAS
/// pull request 5868). Its AVX2 Haswell table runs ddp faster there. Measured on the 2-core
/// development machine (AMD EPYC, family 25 model 17; Debian's OpenBLAS 0.3.21 picks
/// Cooperlake), default config, binaries alternated, 2026-11-23: one process 1.030× (71.2k
/// against 68.9k samples/s, 4 rounds of 3 epochs, 4 of 4 faster); np = 2 at the global batch
/// of 128 1.054× (131.7k against 124.9k, 2 rounds with the cores together, 1.037× and 1.061×);
/// one process with two BLAS threads 0.995× (104.6k against 105.1k). In a hot loop with both
/// cores busy, each of the step's five large GEMMs at 64 rows ran 3–6 % faster on Haswell's
/// kernels (layer 1's forward 262 against 279 µs).
///
/// So on such a host, when the user has not set `OPENBLAS_CORETYPE`, ddp's commands that train
/// or evaluate re-execute themselves once with `OPENBLAS_CORETYPE=Haswell` before doing
/// anything else (the library reads the variable only as it loads). Any value the user sets
/// is kept, so `OPENBLAS_CORETYPE=Cooperlake` restores OpenBLAS's pick. Kernels change the
/// rounding of GEMM sums, not their meaning; the end line of metrics.jsonl records the ones a
/// run used (`blas_core`).
public enum BLASKernels {
    /// OpenBLAS's name for the kernel table this process runs, e.g. "Haswell" or "Cooperlake".
    public static var current: String? {
        openblas_get_corename().map { String(cString: $0) }
    }

    /// `preferred` for this process: its environment, its library's pick, this host's
    /// /proc/cpuinfo (nil where it cannot be read).
    public static var preferredHere: String? {
        guard let pick = current, let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        return preferred(environment: ProcessInfo.processInfo.environment, libraryPick: pick, cpuinfo: cpuinfo)
    }

    /// The `OPENBLAS_CORETYPE` ddp runs with, given the environment, the table the library
    /// picked and the text of /proc/cpuinfo; nil: keep the library's pick.
    public static func preferred(environment: [String: String], libraryPick: String, cpuinfo: String) -> String? {
        guard environment["OPENBLAS_CORETYPE"] == nil,
              ["cooperlake", "skylakex"].contains(libraryPick.lowercased()) else { return nil }
        let cpu = firstProcessor(cpuinfo)
        guard cpu["vendor_id"] == "AuthenticAMD", cpu["cpu family"] == "25",
              cpu["flags"]?.split(separator: " ").contains("avx512f") == true else { return nil }
        return "Haswell"
    }

    /// The first processor's "key : value" lines of /proc/cpuinfo.
    private static func firstProcessor(_ cpuinfo: String) -> [String: String] {
        var fields: [String: String] = [:]
        for line in cpuinfo.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty { if fields.isEmpty { continue } else { break } }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            fields[key] = fields[key] ?? line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return fields
    }
}
