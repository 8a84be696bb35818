import DDPCore
import Foundation

extension BLASKernels {
    /// Re-executes this process with the kernels `decisionHere` names, and returns only where
    /// it names none (or the exec fails, when the process goes on with the library's pick and
    /// says so). Call it first in a command that runs GEMMs: the new image starts the command
    /// again from its arguments, so nothing done before the call survives it.
    static func selectForThisHost() {
        guard case let .reexecute(target)? = decisionHere, let pick = current else { return }
        setenv("OPENBLAS_CORETYPE", target.core, 1)
        setenv(libraryPickVariable, pick, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        let reason = String(cString: strerror(errno))
        unsetenv("OPENBLAS_CORETYPE")
        unsetenv(libraryPickVariable)
        guard JobSession.launcherRank == 0 else { return }
        FileHandle.standardError.write(Data("ddp: warning: cannot re-execute /proc/self/exe with OpenBLAS's \(target.core) kernels (\(reason)); running \(pick)'s\n".utf8))
    }

    /// The run header's kernels line (unless `quiet`) and the warning if any (always), printed
    /// once: by rank 0 of a job, or by a single process. `say` prints the line, in order with
    /// the command's other header lines.
    static func announce(isRoot: Bool, quiet: Bool, say: (String) -> Void = { Console(enabled: true).line($0) }) {
        guard isRoot, let status = statusHere else { return }
        if !quiet { say(status.line) }
        if let warning = status.warning { FileHandle.standardError.write(Data("ddp: warning: \(warning)\n".utf8)) }
    }
}
