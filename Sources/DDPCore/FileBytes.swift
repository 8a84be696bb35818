#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Whole-file reads with POSIX calls (no Foundation bridging of large files), each failure a
/// `DDPError` naming the file and, through `what`, its role ("training images", "weights file").
enum FileBytes {
    static func read(_ path: String, what: String, kind: DDPError.Kind) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DDPError(kind, "cannot read \(what) \(path): \(errorText())") }
        defer { close(fd) }
        var info = stat()
        if fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
            throw DDPError(kind, "\(what) \(path) is a directory, expected a file")
        }
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
            bytes.append(contentsOf: chunk[0..<got])
        }
    }

    static func errorText() -> String { String(cString: strerror(errno)) }
}

/// Outside the enum so it is not shadowed by `FileBytes.read`.
private func posixRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    read(fd, buffer, count)
}
