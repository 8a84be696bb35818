import DDPCore
import Foundation

/// `ddp --version`: what a bug report needs to reproduce a run's numbers. ddp is built where it
/// runs (launch/train builds it from its source tree), so the commit is read from the tree the
/// binary was built from, if it is still there.
enum VersionReport {
    static let version = "0.9"

    static var text: String {
        var lines = ["ddp \(version) (\(commit))"]
        lines.append("Swift: \(swiftCompiler)")
        lines.append("MPI: \(MPICommunicator.libraryVersion ?? "unknown")")
        let config = BLASKernels.libraryConfig ?? "OpenBLAS (version unknown)"
        lines.append("OpenBLAS: \(config)")
        lines.append("kernels: " + kernels)
        return lines.joined(separator: "\n")
    }

    /// The table this process loaded, and the one ddp's computing commands choose here.
    private static var kernels: String {
        let here = BLASKernels.current ?? "unknown"
        switch BLASKernels.decisionHere {
        case .reexecute(let target)?:
            return "\(here) as loaded; train, cv, compare, eval and predict choose \(target.core) for this CPU's \(target.reason)"
        case .keep(let warning?)?:
            return "\(here) (\(warning))"
        default:
            return "\(here), which train, cv, compare, eval and predict keep on this CPU"
        }
    }

    /// "git 1a2b3c4" of the source tree this binary was built from, "+ local changes" when it
    /// differs from that commit; what is known otherwise.
    private static var commit: String {
        let tree = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        guard FileManager.default.fileExists(atPath: tree + "/.git"),
              let hash = git(["-C", tree, "rev-parse", "--short=12", "HEAD"]) else {
            return "commit unknown: built from \(tree), which is not a git checkout here"
        }
        let dirty = !(git(["-C", tree, "status", "--porcelain", "--untracked-files=no"]) ?? "").isEmpty
        return "git \(hash)" + (dirty ? " + local changes" : "") + ", built from \(tree)"
    }

    private static func git(_ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git"] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static var swiftCompiler: String {
        #if compiler(>=7.0)
        "7 or later"
        #elseif compiler(>=6.4)
        "6.4"
        #elseif compiler(>=6.3)
        "6.3"
        #elseif compiler(>=6.2)
        "6.2"
        #elseif compiler(>=6.1)
        "6.1"
        #else
        "6.0"
        #endif
    }
}
