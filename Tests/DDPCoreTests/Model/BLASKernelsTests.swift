import DDPCore
import Foundation
import XCTest

/// Which OpenBLAS kernels ddp asks for (`BLASKernels.best`, `BLASKernels.decide`), read from
/// the /proc/cpuinfo of real CPUs (Fixtures/cpuinfo, sources in its README): the best table
/// their features allow, Haswell's on Zen 4, nothing once the user chose, and a warning where
/// ddp cannot do better than a weak pick.
final class BLASKernelsTests: XCTestCase {
    /// Each fixture and the table its features allow (nil: no rule, keep the library's pick).
    static let expected: [(fixture: String, best: String?)] = [
        ("emerald-rapids", "Cooperlake"),   // family 6 model 207 in a KVM guest that hides AMX
        ("sapphire-rapids", "SapphireRapids"),
        ("granite-rapids", "SapphireRapids"),
        ("ice-lake-sp", "SkylakeX"),
        ("cascade-lake", "SkylakeX"),
        ("skylake-sp", "SkylakeX"),
        ("haswell", "Haswell"),
        ("zen2", "Haswell"),
        ("zen3", "Haswell"),
        ("zen4", "Haswell"),
        ("zen5", "Cooperlake"),
        ("graviton2", "NeoverseN1"),
        ("graviton3", "NeoverseV1"),
        ("grace", "NeoverseN2"),          // Neoverse V2, as Graviton 4
        ("ampere-altra", "NeoverseN1"),
        ("qemu-generic", nil),
    ]

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/cpuinfo")

    func host(_ fixture: String) throws -> BLASKernels.Host {
        let text = try String(contentsOf: Self.fixtures.appendingPathComponent("\(fixture).cpuinfo"), encoding: .utf8)
        return BLASKernels.Host(architecture: text.contains("CPU implementer") ? "aarch64" : "x86_64", cpuinfo: text)
    }

    /// The weakest table each architecture's DYNAMIC_ARCH OpenBLAS falls back to.
    func fallback(_ host: BLASKernels.Host) -> String { host.architecture == "x86_64" ? "Prescott" : "armv8" }

    func testEachRealCPUGetsTheBestTableItsFeaturesAllow() throws {
        for (fixture, best) in Self.expected {
            XCTAssertEqual(BLASKernels.best(for: try host(fixture))?.core, best, fixture)
        }
    }

    func testAFallbackPickIsReplacedOnEveryCPUWithARule() throws {
        for (fixture, best) in Self.expected {
            let host = try host(fixture)
            let decision = BLASKernels.decide(environment: [:], library: .init(pick: fallback(host), isDynamic: true), host: host)
            if let best {
                XCTAssertEqual(decision, .reexecute(try XCTUnwrap(BLASKernels.best(for: host))), fixture)
            } else {
                XCTAssertEqual(decision, .keep(warning: nil), fixture)
            }
        }
    }

    func testTheUsersChoiceAlwaysWins() throws {
        for (fixture, _) in Self.expected {
            let host = try host(fixture)
            for asked in ["Prescott", "Haswell", "armv8"] {
                XCTAssertEqual(BLASKernels.decide(environment: ["OPENBLAS_CORETYPE": asked], library: .init(pick: asked), host: host),
                                   .keep(warning: nil), "\(fixture), \(asked)")
            }
        }
    }

    func testAPickAsGoodAsTheFeaturesIsKept() throws {
        // The library's own pick on the models it knows: nothing to gain from a restart.
        let kept: [(String, String)] = [("zen2", "Zen"), ("zen3", "Zen"), ("haswell", "Haswell"), ("ice-lake-sp", "SkylakeX"),
                                        ("emerald-rapids", "Cooperlake"), ("graviton3", "neoversev1"),
                                        // SapphireRapids' fp32 kernels are Cooperlake's: one tier.
                                        ("sapphire-rapids", "Cooperlake"), ("granite-rapids", "COOPERLAKE")]
        for (fixture, pick) in kept {
            XCTAssertEqual(BLASKernels.decide(environment: [:], library: .init(pick: pick, isDynamic: true), host: try host(fixture)),
                           .keep(warning: nil), "\(fixture), \(pick)")
        }
    }

    func testZen4GetsHaswellOverTheIntelAVX512Tables() throws {
        let zen4 = try host("zen4")
        let haswell = try XCTUnwrap(BLASKernels.best(for: zen4))
        XCTAssertTrue(haswell.overrides)
        for pick in ["Cooperlake", "SKYLAKEX", "Prescott"] {
            XCTAssertEqual(BLASKernels.decide(environment: [:], library: .init(pick: pick, isDynamic: true), host: zen4), .reexecute(haswell), pick)
        }
        // Zen 5 (family 26) executes 512-bit operations whole: its AVX-512 pick stands.
        XCTAssertEqual(BLASKernels.decide(environment: [:], library: .init(pick: "Cooperlake", isDynamic: true), host: try host("zen5")),
                       .keep(warning: nil))
    }

    func testAStaticLibraryThatCannotDoBetterIsNamedInAWarning() throws {
        let decision = BLASKernels.decide(environment: [:], library: .init(pick: "Prescott", isDynamic: false), host: try host("emerald-rapids"))
        guard case let .keep(warning?) = decision else { return XCTFail("no warning: \(decision)") }
        XCTAssertTrue(warning.contains("Prescott") && warning.contains("DYNAMIC_ARCH") && warning.contains("Cooperlake"), warning)
        // Zen 4 on a static Cooperlake build: weaker kernels are no loss to warn of.
        XCTAssertEqual(BLASKernels.decide(environment: [:], library: .init(pick: "Cooperlake", isDynamic: false), host: try host("zen4")),
                       .keep(warning: nil))
    }

    func testAnUnknownArchitectureIsNamedInAWarning() {
        let power = BLASKernels.Host(architecture: "ppc64le", cpuinfo: "processor\t: 0\ncpu\t\t: POWER9 (raw), altivec supported\n")
        guard case let .keep(warning?) = BLASKernels.decide(environment: [:], library: .init(pick: "POWER9", isDynamic: true), host: power) else {
            return XCTFail("no warning for ppc64le")
        }
        XCTAssertTrue(warning.contains("ppc64le") && warning.contains("POWER9"), warning)
    }

    func testATableTheLibraryLacksIsNamedInAWarning() throws {
        // ddp's restarted image asked for SkylakeX; a library built without it loaded Haswell.
        let environment = ["OPENBLAS_CORETYPE": "SkylakeX", BLASKernels.libraryPickVariable: "Prescott"]
        let decision = BLASKernels.decide(environment: environment, library: .init(pick: "Haswell", isDynamic: true), host: try host("ice-lake-sp"))
        guard case let .keep(warning?) = decision else { return XCTFail("no warning: \(decision)") }
        XCTAssertTrue(warning.contains("SkylakeX") && warning.contains("Haswell"), warning)
        // Debian's 0.3.21 loads Cooperlake for SapphireRapids: the same fp32 kernels, no warning.
        let amx = ["OPENBLAS_CORETYPE": "SapphireRapids", BLASKernels.libraryPickVariable: "Prescott"]
        XCTAssertEqual(BLASKernels.decide(environment: amx, library: .init(pick: "Cooperlake", isDynamic: true), host: try host("sapphire-rapids")),
                       .keep(warning: nil))
    }

    func testTheRestartedImageNeverRestartsAgain() throws {
        // After the restart the library runs the table asked for (or one of its tier).
        for (fixture, _) in Self.expected {
            let host = try host(fixture)
            guard case let .reexecute(target) = BLASKernels.decide(environment: [:], library: .init(pick: fallback(host)), host: host) else { continue }
            let restarted = ["OPENBLAS_CORETYPE": target.core, BLASKernels.libraryPickVariable: fallback(host)]
            XCTAssertEqual(BLASKernels.decide(environment: restarted, library: .init(pick: target.core), host: host), .keep(warning: nil), fixture)
        }
    }

    func testAVendorTunedTableIsKept() throws {
        // Tables ddp does not rank (Kunpeng's tsv110, Apple's vortex) are the library's
        // considered pick, not a fallback, even where the features would name NeoverseN1.
        for pick in ["TSV110", "vortex", "thunderx3t110"] {
            XCTAssertNil(BLASKernels.tier(pick))
            XCTAssertEqual(BLASKernels.decide(environment: [:], library: .init(pick: pick), host: try host("graviton2")), .keep(warning: nil), pick)
        }
    }

    func testAnUnreadableCPUInfoWarnsOnlyOfABaselinePick() {
        guard case let .keep(warning?) = BLASKernels.decide(environment: [:], library: .init(pick: "Prescott"), host: nil) else {
            return XCTFail("no warning for Prescott with /proc/cpuinfo unreadable")
        }
        XCTAssertTrue(warning.contains("/proc/cpuinfo") && warning.contains("Prescott"), warning)
        XCTAssertEqual(BLASKernels.decide(environment: [:], library: .init(pick: "Haswell"), host: nil), .keep(warning: nil))
    }

    func testTheZen4RuleStopsAtTheReleaseTunedForZen4() throws {
        let zen4 = try host("zen4")
        let measured = BLASKernels.Library(pick: "Cooperlake", config: "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Cooperlake MAX_THREADS=64")
        XCTAssertEqual(measured.version, [0, 3, 21])
        XCTAssertTrue(measured.isDynamic)
        XCTAssertEqual(BLASKernels.decide(environment: [:], library: measured, host: zen4),
                       .reexecute(.init(core: "Haswell", reason: "Zen 4 cores (AMD family 25 with AVX-512)", overrides: true)))
        let tuned = BLASKernels.Library(pick: "Cooperlake", config: "OpenBLAS 0.3.34 DYNAMIC_ARCH NO_AFFINITY Cooperlake MAX_THREADS=512")
        XCTAssertEqual(BLASKernels.decide(environment: [:], library: tuned, host: zen4), .keep(warning: nil))
        let unversioned = BLASKernels.Library(pick: "Cooperlake", config: "DYNAMIC_ARCH")
        XCTAssertNil(unversioned.version)
        XCTAssertEqual(BLASKernels.best(for: zen4, library: unversioned)?.core, "Haswell")
        XCTAssertFalse(BLASKernels.Library(pick: "Haswell", config: "OpenBLAS 0.3.21 NO_LAPACKE Haswell MAX_THREADS=64").isDynamic)
    }

    func testTheHostReadsOnlyTheFirstProcessor() {
        let one = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nflags\t\t: fpu avx2 fma avx512f\n"
        let other = "processor\t: 1\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nflags\t\t: fpu\n"
        let host = BLASKernels.Host(architecture: "x86_64", cpuinfo: "\n" + one + "\n" + other + "\n")
        XCTAssertEqual(host.vendor, "AuthenticAMD")
        XCTAssertEqual(host.family, 25)
        XCTAssertTrue(host.features.contains("avx512f"))
        XCTAssertNil(BLASKernels.best(for: BLASKernels.Host(architecture: "x86_64", cpuinfo: "")))
    }
}
