import DDPCore
import Foundation
import XCTest

/// The kernels a real run used, as its metrics.jsonl records them: the ones
/// `BLASKernels.decide` names for this host's features (each rank re-executes itself with
/// them), else the library's pick; and any `OPENBLAS_CORETYPE` the user set, untouched.
final class KernelSelectionCommandTests: IntegrationTestCase {
    static let yaml = """
        seed: 3
        data:
          train: {format: circles, samples: 256}
          normalize: none
        model:
          inputs: 2
          layers:
            - {type: dense, units: 16, activation: relu}
            - {type: dense, units: 1}
        loss: {type: binary_crossentropy, from_logits: true}
        optimizer: {type: adam, lr: 0.01}
        training: {epochs: 1, batch_size: 32}
        checkpoint: {every_epochs: 0, keep: 1}
        """

    func testARunRecordsTheKernelsThisHostGets() throws {
        let expected = try Integration.expectedBLASCore()
        let config = try writeConfig("small.yaml", Self.yaml)
        try train(np: 2, config: config, runDirectory: path("chosen"))
        let metrics = try Metrics(runDirectory: path("chosen"))
        let recorded = try metrics.endString("blas_core")
        XCTAssertTrue(Integration.sameTier(recorded, expected.core), "recorded \(recorded ?? "none"), expected \(expected.core)")
        XCTAssertEqual(try metrics.endString("blas_core_chosen_by"), expected.chosenBy.rawValue)
    }

    func testTheUsersKernelsAreKept() throws {
        #if arch(x86_64)
        let config = try writeConfig("small.yaml", Self.yaml)
        // Prescott's SSE3 kernels run on every x86-64 CPU, and ddp never picks them.
        let result = try runDDP(np: nil, ["train", config, "--run-dir", path("forced")], environment: ["OPENBLAS_CORETYPE": "Prescott"])
        XCTAssertEqual(result.status, 0, result.tail)
        XCTAssertEqual(try Metrics(runDirectory: path("forced")).endString("blas_core"), "Prescott")
        XCTAssertEqual(try Metrics(runDirectory: path("forced")).endString("blas_core_chosen_by"), "user")
        XCTAssertTrue(result.output.contains("kernels: OpenBLAS Prescott, as OPENBLAS_CORETYPE asks"), result.tail)
        #else
        throw XCTSkip("OPENBLAS_CORETYPE names x86-64 kernel tables")
        #endif
    }
}
