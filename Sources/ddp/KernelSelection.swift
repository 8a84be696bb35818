import DDPCore
import Foundation

extension BLASKernels {
    /// Re-executes this process with the kernels `preferredHere` names, and returns only where
    /// it names none (or the exec fails, when the process goes on with the library's pick).
    /// Call it first in a command that runs GEMMs: the new image starts the command again from
    /// its arguments, so nothing done before the call survives it.
    static func selectForThisHost() {
        guard let kernels = preferredHere else { return }
        setenv("OPENBLAS_CORETYPE", kernels, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        unsetenv("OPENBLAS_CORETYPE")
    }
}
