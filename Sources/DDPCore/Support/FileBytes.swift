#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Whole-file reads with POSIX calls (no Foundation bridging of large files), each failure a
/// `DDPError` naming the file and, through `what`, its role ("training images", "weights file").
///
/// A regular file is read to its end. A pipe (`<(zcat …)`, a FIFO) has no size to check, so it
/// is read up to `streamLimit` bytes; a device or socket is refused: `/dev/zero` would otherwise
/// be read until the allocation traps.
enum FileBytes {
    /// Data files a Debian package installs, by directory: a missing one names the package.
    static let packages = ["/usr/share/datasets/fashion-mnist/": "dataset-fashion-mnist"]

    static func packageHint(_ path: String) -> String {
        guard let package = packages.first(where: { path.hasPrefix($0.key) })?.value else { return "" }
        return " (Debian's \(package) package installs it: apt-get install \(package))"
    }

    /// The most bytes read from a pipe: a quarter of the machine's memory, as gunzip's limit.
    static var streamLimit: Int { MemoryCheck.physicalBytes / 4 }

    static func read(_ path: String, what: String, kind: DDPError.Kind, streamLimit: Int = FileBytes.streamLimit) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let missing = errno == ENOENT
            throw DDPError(kind, "cannot read \(what) \(path): \(errorText())" + (missing ? packageHint(path) : ""))
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DDPError(.io, "cannot read \(what) \(path): \(errorText())") }
        let type = info.st_mode & S_IFMT
        if type == S_IFDIR { throw DDPError(kind, "\(what) \(path) is a directory, expected a file") }
        guard type == S_IFREG || type == S_IFIFO else {
            throw DDPError(kind, "\(what) \(path) is a device or socket, not a file: give a regular file (or a pipe)")
        }
        let limit = type == S_IFREG ? Int.max : streamLimit
        var bytes = [UInt8]()
        bytes.reserveCapacity(Int(max(0, info.st_size)))
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let got = chunk.withUnsafeMutableBytes { posixRead(fd, $0.baseAddress, $0.count) }
            if got == 0 { return bytes }
            if got < 0 {
                if errno == EINTR { continue }
                throw DDPError(.io, "cannot read \(what) \(path): \(errorText())")
            }
            guard bytes.count + got <= limit else {
                throw DDPError(kind, "\(what) \(path): more than \(MemoryCheck.describe(limit)) from a pipe (a quarter of this machine's memory); "
                               + "give a regular file")
            }
            bytes.append(contentsOf: chunk[0..<got])
        }
    }

    static func errorText() -> String { String(cString: strerror(errno)) }
}

/// Outside the enum so it is not shadowed by `FileBytes.read`.
private func posixRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    read(fd, buffer, count)
}
