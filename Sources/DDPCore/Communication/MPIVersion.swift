import _CMPI

extension MPICommunicator {
    /// The MPI library's own name and version, the first line of MPI_Get_library_version
    /// ("Open MPI v4.1.4, package: Debian OpenMPI, …" → "Open MPI v4.1.4"); readable without
    /// starting MPI.
    public static var libraryVersion: String? {
        var text = [CChar](repeating: 0, count: 512)
        guard cmpi_library_version(&text, Int32(text.count)) == 0 else { return nil }
        let line = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return line.split(separator: "\n").first?.split(separator: ",").first.map(String.init)
    }
}
