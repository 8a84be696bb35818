import DDPCore
import XCTest

/// Which OpenBLAS kernels ddp asks for (`BLASKernels.preferred`): Haswell's on AMD Zen 4 where
/// the library picked its Intel AVX-512 tables, and nothing anywhere else or once the user chose.
final class BLASKernelsTests: XCTestCase {
    private func cpuinfo(vendor: String, family: Int, flags: String) -> String {
        // Two processors, as /proc/cpuinfo lists them: only the first is read.
        let one = "processor\t: 0\nvendor_id\t: \(vendor)\ncpu family\t: \(family)\nmodel\t\t: 17\nmodel name\t: AMD EPYC\nflags\t\t: \(flags)\n"
        return one + "\n" + one.replacingOccurrences(of: "processor\t: 0", with: "processor\t: 1") + "\n"
    }
    private let avx512 = "fpu sse sse2 avx avx2 fma avx512f avx512dq avx512bw avx512_bf16"
    private let avx2 = "fpu sse sse2 avx avx2 fma"

    func testZen4WithTheIntelAVX512TablesGetsHaswell() {
        let zen4 = cpuinfo(vendor: "AuthenticAMD", family: 25, flags: avx512)
        XCTAssertEqual(BLASKernels.preferred(environment: [:], libraryPick: "Cooperlake", cpuinfo: zen4), "Haswell")
        XCTAssertEqual(BLASKernels.preferred(environment: [:], libraryPick: "SKYLAKEX", cpuinfo: zen4), "Haswell")
    }

    func testTheUsersChoiceIsKept() {
        let zen4 = cpuinfo(vendor: "AuthenticAMD", family: 25, flags: avx512)
        XCTAssertNil(BLASKernels.preferred(environment: ["OPENBLAS_CORETYPE": "Cooperlake"], libraryPick: "Cooperlake", cpuinfo: zen4))
    }

    func testOtherHostsKeepTheLibrarysPick() {
        // Intel's own AVX-512 cores, Zen 5 (family 26, full-width AVX-512), Zen 3 (no AVX-512).
        XCTAssertNil(BLASKernels.preferred(environment: [:], libraryPick: "SkylakeX",
                                           cpuinfo: cpuinfo(vendor: "GenuineIntel", family: 6, flags: avx512)))
        XCTAssertNil(BLASKernels.preferred(environment: [:], libraryPick: "Cooperlake",
                                           cpuinfo: cpuinfo(vendor: "AuthenticAMD", family: 26, flags: avx512)))
        XCTAssertNil(BLASKernels.preferred(environment: [:], libraryPick: "Zen",
                                           cpuinfo: cpuinfo(vendor: "AuthenticAMD", family: 25, flags: avx2)))
        // A Zen 4 whose library already runs AVX2 kernels, and an unreadable cpuinfo.
        XCTAssertNil(BLASKernels.preferred(environment: [:], libraryPick: "Haswell",
                                           cpuinfo: cpuinfo(vendor: "AuthenticAMD", family: 25, flags: avx512)))
        XCTAssertNil(BLASKernels.preferred(environment: [:], libraryPick: "Cooperlake", cpuinfo: ""))
    }
}
