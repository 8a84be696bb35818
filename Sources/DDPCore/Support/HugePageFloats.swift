#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Zeroed float buffers carved out of one region that starts on a 2 MiB boundary and is advised
/// MADV_HUGEPAGE, so that where transparent huge pages are on (`enabled` = `madvise` or `always`)
/// the update's private streams (the optimizer's moments, and the network's parameters, which
/// the update writes in place) sit in physically contiguous huge pages instead of 4 KiB pages
/// scattered wherever the kernel found them. Each part starts on a 64-byte line.
///
/// Why: with the moments and the sharded update's private copy in plain allocations (separate
/// 4 KiB-page mappings), the sharded update's Adam loop (5 streams read, 3 written) ran at full
/// speed in one rank and at half of it in the other, by physical placement (it followed the
/// allocations, not the core or the block). In these regions both ranks run at full speed:
/// np = 2 1.051×, np = 1 unchanged (docs/PERFORMANCE.md, 'Huge pages for the update's buffers
/// (HugePageFloats)'). A region costs at most one huge page more than it uses.
final class HugePageFloats {
    static let alignment = 2 << 20
    let parts: [UnsafeMutableBufferPointer<Float>]
    private let base: UnsafeMutableRawPointer

    /// One part of `count` floats (at least one) for each element of `counts`, in order.
    init(counts: [Int]) {
        var offsets: [Int] = []
        var bytes = 0
        for count in counts {
            offsets.append(bytes)
            bytes += (max(count, 1) * MemoryLayout<Float>.stride + 63) / 64 * 64
        }
        let length = (bytes + Self.alignment - 1) / Self.alignment * Self.alignment
        var region: UnsafeMutableRawPointer?
        guard posix_memalign(&region, Self.alignment, length) == 0, let region else {
            fatalError("HugePageFloats: cannot allocate \(length) bytes")
        }
        #if os(Linux)
        // Advice only: where huge pages are off or unavailable the region stays 4 KiB pages.
        _ = madvise(region, length, MADV_HUGEPAGE)
        #endif
        region.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        base = region
        parts = zip(offsets, counts).map { offset, count in
            UnsafeMutableBufferPointer(start: (region + offset).bindMemory(to: Float.self, capacity: max(count, 1)), count: max(count, 1))
        }
    }

    deinit { free(base) }
}
