#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Whole-file writes that a reader, or a crash, never sees half done: checkpoints and reports are
/// read by other processes (and by a resumed run), so a torn file would be worse than an old one.
public enum AtomicFile {
    /// Writes `bytes` to "path.tmp-<pid>" in the same directory (so the rename stays within one
    /// file system), fsyncs it, renames it over `path` and fsyncs the directory so the rename
    /// itself survives a crash. On failure the temporary file is removed and `path` is untouched.
    /// Errors are `DDPError(.io, "cannot write PATH: reason")`.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        func fail() -> DDPError { DDPError(.io, "cannot write \(path): \(String(cString: strerror(errno)))") }

        let temporary = "\(path).tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw fail() }
        var renamed = false
        defer { if !renamed { unlink(temporary) } }

        var failure: DDPError?
        bytes.withUnsafeBytes { buffer in
            var written = 0
            while written < buffer.count {
                let count = posixWrite(fd, buffer.baseAddress! + written, buffer.count - written)
                if count < 0 {
                    if errno == EINTR { continue }
                    failure = fail()
                    return
                }
                written += count
            }
        }
        if failure == nil, fsync(fd) != 0 { failure = fail() }
        if close(fd) != 0, failure == nil { failure = fail() }
        if let failure { throw failure }

        guard rename(temporary, path) == 0 else { throw fail() }
        renamed = true
        try syncDirectory(of: path, onFailure: fail)
    }

    public static func write(_ text: String, to path: String) throws {
        try write(Array(text.utf8), to: path)
    }

    /// A file the user named (`predict --output`): a new path or a regular file is written
    /// atomically; a symbolic link is followed, so the link stays and its target is written (a
    /// regular target atomically); a device or FIFO (a link to /dev/stdout, say) is written
    /// directly, since renaming over it would replace it with a regular file. A directory, or a
    /// link to one, is refused.
    public static func writeOutput(_ text: String, to path: String) throws {
        var target = path
        var info = stat()
        var links = 0
        // Follow links one at a time: the last target may not exist yet (then it is created).
        while lstat(target, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK {
            links += 1
            guard links <= 40, let destination = try? FileManager.default.destinationOfSymbolicLink(atPath: target) else {
                throw DDPError(.io, "cannot write \(path): it is a symbolic link that cannot be followed")
            }
            target = destination.hasPrefix("/") ? destination : (target as NSString).deletingLastPathComponent + "/" + destination
        }
        guard stat(target, &info) == 0 else { return try write(text, to: target) }
        switch info.st_mode & S_IFMT {
        case S_IFREG: try write(text, to: target)
        case S_IFDIR: throw DDPError(.io, "cannot write \(path): \(target == path ? "it" : "its link target \(target)") is a directory, expected a file")
        default: try writeDirectly(Array(text.utf8), to: target, named: path)
        }
    }

    /// Writes into an existing device or FIFO, as a shell's `>` would.
    private static func writeDirectly(_ bytes: [UInt8], to target: String, named path: String) throws {
        func fail() -> DDPError { DDPError(.io, "cannot write \(path): \(String(cString: strerror(errno)))") }
        let fd = open(target, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw fail() }
        defer { close(fd) }
        try bytes.withUnsafeBytes { buffer in
            var written = 0
            while written < buffer.count {
                let count = posixWrite(fd, buffer.baseAddress! + written, buffer.count - written)
                if count < 0 {
                    if errno == EINTR { continue }
                    throw fail()
                }
                written += count
            }
        }
    }

    /// Some file systems cannot fsync a directory (EINVAL); there the rename is as durable as it gets.
    private static func syncDirectory(of path: String, onFailure fail: () -> DDPError) throws {
        let directory: String
        if let slash = path.lastIndex(of: "/") {
            directory = slash == path.startIndex ? "/" : String(path[..<slash])
        } else {
            directory = "."
        }
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw fail() }
        defer { close(fd) }
        if fsync(fd) != 0, errno != EINVAL { throw fail() }
    }
}

/// Outside the enum so it is not shadowed by `AtomicFile.write`.
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}
