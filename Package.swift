// swift-tools-version: 6.0
import PackageDescription
import Foundation

/// DDPCore's elementwise loops (the Adam update, BatchNorm, dropout, the gather) are written
/// over SIMD8<Float>; built for baseline x86-64 they run as pairs of 4-wide SSE operations.
/// Where the building machine has AVX2 and FMA (every x86-64 CPU since 2013), the core is
/// compiled for Haswell's instruction set: the same IEEE operations in 8-wide registers.
/// One process 1.06× faster, byte-identical weights (docs/PERFORMANCE.md, 'Compiler settings
/// (Package.swift)'). A binary built this way needs such a CPU to run; ddp is built where it
/// runs (launch/train, launch/test).
///
/// `-fno-math-errno`: on Linux, Float.squareRoot() reaches the C library's sqrtf through a
/// SwiftShims inline function, so under C's default (sqrt of a negative number sets errno)
/// every lane of the Adam update's SIMD8 square root was a scalar sqrtss, a branch and a
/// stack spill. Without errno it is one vsqrtps: the same IEEE square root, so weights stay
/// byte-identical, and one process ran 1.17× faster (docs/PERFORMANCE.md, 'Compiler settings
/// (Package.swift)').
let coreSettings: [SwiftSetting] = {
    let noErrno: [String] = ["-Xcc", "-fno-math-errno"]
    #if arch(x86_64) && os(Linux)
    let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
        .split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ") ?? []
    if flags.contains("avx2") && flags.contains("fma") { return [.unsafeFlags(["-target-cpu", "haswell"] + noErrno)] }
    #endif
    return [.unsafeFlags(noErrno)]
}()

let package = Package(
    name: "ddp",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "ddp", targets: ["ddp"]),
        .library(name: "DDPCore", targets: ["DDPCore"]),
        .library(name: "DDPReport", targets: ["DDPReport"]),
        .library(name: "DDPExperiments", targets: ["DDPExperiments"]),
        .library(name: "DDPBench", targets: ["DDPBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // MARK: Public API: the trainer library and its command-line front end.
        .executableTarget(
            name: "ddp",
            dependencies: [
                "DDPCore", "DDPReport", "DDPExperiments", "DDPBench", "_CPreemption",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(
            name: "DDPCore",
            dependencies: ["_CMPI", "_CWatchdog", "_CPreemption", "_CPrefetch", "_CDropoutMask", "_CBLAS", "_CZlib", "Yams"],
            swiftSettings: coreSettings
        ),
        // Plots, HTML reports and comparison tables, read from finished runs: the trainer
        // (DDPCore) never links them.
        .target(name: "DDPReport", dependencies: ["DDPCore"]),
        // Experiments that train: compared variants, repeats over seeds, cross-validation folds;
        // they read their runs back through DDPReport's tables.
        .target(name: "DDPExperiments", dependencies: ["DDPCore", "DDPReport"]),
        // `ddp bench`'s harness: it runs the ddp binary per case and checks the host's cores.
        .target(name: "DDPBench", dependencies: ["DDPCore", "DDPReport", "_CAffinity"]),

        // MARK: Implementation details: thin C shims over system libraries.
        // MPI handles are macros Swift cannot import, so `_CMPI` wraps the few calls we need.
        .systemLibrary(name: "_CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "_CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "_CZlib", providers: [.apt(["zlib1g-dev"])]),
        // The collective watchdog: a pthread and atomics, state once per process (so not
        // static inline in a header), MPI-free (the abort is passed in).
        .target(name: "_CWatchdog"),
        // Preemption: signal handlers that set a flag the trainer reads once per step.
        .target(name: "_CPreemption"),
        // Software prefetch for the batch gather (a compiler builtin Swift cannot call).
        .target(name: "_CPrefetch"),
        // Dropout's mask draw, compiled per CPU (AVX-512, AVX2, baseline) in one binary.
        .target(name: "_CDropoutMask"),
        // Thread pinning for `ddp bench`'s cross-core check (needs _GNU_SOURCE).
        .target(name: "_CAffinity"),

        // MARK: Tests
        .testTarget(name: "DDPCoreTests", dependencies: ["DDPCore"], exclude: ["Model/Fixtures"]),
        .testTarget(name: "DDPReportTests", dependencies: ["DDPReport", "DDPCore"]),
        .testTarget(name: "DDPExperimentsTests", dependencies: ["DDPExperiments", "DDPReport", "DDPCore"]),
        .testTarget(name: "IntegrationTests", dependencies: ["DDPCore"]),
    ]
)
