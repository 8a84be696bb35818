import Foundation

/// The run directory's rules. A fresh run never mixes with an older one: its checkpoints would
/// be pruned against the old epochs and a later `--resume` would load the old run. So a fresh
/// run refuses a directory that already holds a run, unless told to overwrite it.
public enum RunDirectory {
    /// What a run writes; a fresh run with overwrite removes these, its TensorBoard event files
    /// and nothing else.
    static let runFiles = ["trace.json", "metrics.jsonl", "model.safetensors", "best.safetensors", "checkpoints",
                           "plots", "report.html", "config.yaml", TensorBoardStepWriter.directoryName]

    /// Whether `path` holds (part of) an earlier run.
    public static func holdsRun(_ path: String) -> Bool {
        ["metrics.jsonl", "checkpoints", "model.safetensors"].contains {
            FileManager.default.fileExists(atPath: "\(path)/\($0)")
        }
    }

    /// Before a fresh run. Every rank may check; only the rank that writes passes `remove: true`.
    public static func prepareFresh(_ path: String, overwrite: Bool, remove: Bool) throws {
        guard holdsRun(path) else { return }
        guard overwrite else {
            throw DDPError(.config, "run directory \(path) already holds a run; continue it with --resume, replace it with --overwrite, or choose another --run-dir")
        }
        guard remove else { return }
        let eventFiles = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter(TensorBoardWriter.isEventFile)
        for name in runFiles + eventFiles where FileManager.default.fileExists(atPath: "\(path)/\(name)") {
            do {
                try FileManager.default.removeItem(atPath: "\(path)/\(name)")
            } catch {
                throw DDPError(.io, "cannot remove \(path)/\(name) to overwrite the run: \(error.localizedDescription)")
            }
        }
    }

    /// Before `ddp cv` or `ddp compare` writes into `path`: output an earlier one left there
    /// (one of `markers`, or a run directory up to three levels down) is kept unless
    /// `overwrite`, as `ddp train` keeps an earlier run. Every rank may check alike.
    public static func refuseEarlierOutput(_ path: String, markers: [String], command: String, overwrite: Bool) throws {
        guard !overwrite else { return }
        func runs(in directory: String, depth: Int) -> [String] {
            guard depth > 0 else { return [] }
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
            return names.flatMap { name -> [String] in
                let child = directory + "/" + name
                return holdsRun(child) ? [child] : runs(in: child, depth: depth - 1)
            }
        }
        let found = markers.filter { FileManager.default.fileExists(atPath: "\(path)/\($0)") }.map { "\(path)/\($0)" }
            + runs(in: path, depth: 3)
        guard let first = found.first else { return }
        let more = found.count > 1 ? " and \(found.count - 1) more" : ""
        throw DDPError(.config, "\(path) already holds an earlier \(command)'s output (\(first)\(more)); replace it with --overwrite, "
                       + "or choose another --out")
    }

    /// `mkdir -p` with an error that names the directory.
    /// Foundation's own failure reads "NSCocoaErrorDomain error 512", so each missing level is
    /// made with mkdir(2) and a failure names the level and the system's reason ("/etc/hostname
    /// is a file, not a directory").
    public static func create(_ path: String) throws {
        var level = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            level += "/" + component
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: level, isDirectory: &isDirectory) {
                guard isDirectory.boolValue else {
                    throw DDPError(.io, "cannot create directory \(path): \(level) is a file, not a directory")
                }
                continue
            }
            guard mkdir(level, 0o777) == 0 || errno == EEXIST else {
                throw DDPError(.io, "cannot create directory \(path): \(level): \(String(cString: strerror(errno)))")
            }
        }
    }
}
