import DDPCore
import Foundation

/// Runs a command body and turns every failure into one clear message and a non-zero exit.
///
/// Before MPI starts, a failure (config, data, shapes) is identical on every rank, so only the
/// launcher's rank 0 prints it and every rank exits 1 without touching MPI. Once MPI runs, the
/// failing rank prints its message with its rank and aborts the whole job (MPI_Abort), so no
/// rank is ever left waiting in a collective. MPI is finalized on every other exit path.
final class JobSession {
    private var communicator: Communicator?

    /// The rank the launcher gave this process, readable before MPI_Init.
    static var launcherRank: Int {
        for name in ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"] {
            if let value = ProcessInfo.processInfo.environment[name], let rank = Int(value) { return rank }
        }
        return 0
    }

    func execute(_ body: () throws -> Void) {
        do {
            try body()
            communicator?.finalize()
        } catch {
            fail(error)
        }
    }

    /// Starts MPI when a launcher started us, else a single-process communicator, and runs `body`.
    /// Under MPI the collective watchdog starts first: no rank waits longer than
    /// `watchdogTimeout` seconds in one collective (`distributed.timeout_seconds`).
    func startCommunicator(watchdogTimeout: Double, _ body: (Communicator) throws -> Void) throws {
        let environment = ProcessInfo.processInfo.environment
        if !MPICommunicator.launchedByMPI, let tasks = environment["SLURM_NTASKS"].flatMap(Int.init), tasks > 1,
           environment["SLURM_STEP_ID"] != nil {
            // srun without an MPI plugin starts N independent processes that would each train
            // alone and write the same run directory.
            throw DDPError(.communication, "srun started \(tasks) tasks without MPI: use `srun --mpi=pmix` (see `srun --mpi=list`) or mpirun")
        }
        let communicator: Communicator = MPICommunicator.launchedByMPI ? try MPICommunicator() : LocalCommunicator()
        self.communicator = communicator
        try communicator.startWatchdog(timeoutSeconds: watchdogTimeout)
        try body(communicator)
    }

    private func fail(_ error: Error) -> Never {
        if let agreed = error as? AgreedFailure, let communicator {
            if agreed.printHere {
                let who = communicator.rank == 0 ? "" : " on rank \(communicator.rank) of \(communicator.size)"
                FileHandle.standardError.write(Data("ddp: error\(who): \(agreed.error.message)\n".utf8))
            }
            communicator.finalize()
            exit(1)
        }
        let message = (error as? DDPError)?.message ?? error.localizedDescription
        guard let communicator, communicator.size > 1 else {
            let rank = Self.launcherRank
            if rank == 0 {
                FileHandle.standardError.write(Data("ddp: error: \(message)\n".utf8))
            } else if let kind = (error as? DDPError)?.kind, kind == .data || kind == .io || kind == .weights {
                // Possibly this node's alone (a file missing here): say so, after giving rank 0
                // time to speak first (and the launcher time to end the job) when all ranks fail.
                sleep(1)
                FileHandle.standardError.write(Data("ddp: error on rank \(rank): \(message)\n".utf8))
            }
            communicator?.finalize()
            exit(1)
        }
        // Other ranks usually hit a collective error at the same moment; let rank 0 speak first.
        if communicator.rank != 0 { usleep(300_000) }
        FileHandle.standardError.write(Data("ddp: error on rank \(communicator.rank) of \(communicator.size): \(message)\n".utf8))
        communicator.abort(code: 1)
    }
}
