// swift-tools-version: 6.0
// libFuzzer harnesses for ddp's parsers: one executable, the parser picked by DDP_FUZZ_TARGET.
// Build and run with launch/fuzz (it passes -sanitize=fuzzer,address and -enable-testing, so
// the harness can reach DDPCore's internal parsers through @testable import).
import PackageDescription

let package = Package(
    name: "ddp-fuzz",
    dependencies: [.package(name: "ddp", path: "..")],
    targets: [
        .executableTarget(name: "DDPFuzz", dependencies: [.product(name: "DDPCore", package: "ddp")]),
    ]
)
