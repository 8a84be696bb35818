@testable import DDPCore
import Foundation
import XCTest

/// Resume picks the newest checkpoint and pruning removes the oldest, by epoch number: past
/// epoch 9999 the file names grow a digit, and name order ("epoch-10000" < "epoch-9999") would
/// resume from the older one and prune the newest. (In process: 10 000 real epochs take too long.)
final class CheckpointStoreTests: XCTestCase {
    func testNewestCheckpointPastEpoch9999() throws {
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("CheckpointStoreTests-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: run) }
        let store = CheckpointStore(runDirectory: run)
        for epoch in [9998, 9999, 10000] {
            let json = """
                {"format": "ddp-checkpoint-1", "epoch": \(epoch), "globalStep": \(epoch), "optimizerStep": \(epoch), "seed": 1, "ranks": 1, "globalBatch": 32,
                 "monitor": {"wait": 0, "best": 0.5, "bestEpoch": 0, "hasSnapshot": false},
                 "tensorsFile": "", "tensorsBytes": 0, "tensorsChecksum": ""}
                """
            let state = try JSONDecoder().decode(CheckpointState.self, from: Data(json.utf8))
            _ = try store.save(tensors: [StoredTensor(name: "w", shape: [1], floats: [Float(epoch)])], state: state, keep: 2)
        }
        let newest = try XCTUnwrap(store.newestValid().checkpoint)
        XCTAssertEqual(newest.state.epoch, 10000)
        XCTAssertEqual(newest.tensors["w"]?.floats(), [10000])
        let left = try FileManager.default.contentsOfDirectory(atPath: store.directory).filter { $0.hasSuffix(".json") }.sorted()
        XCTAssertEqual(left, ["epoch-10000.json", "epoch-9999.json"], "keep: 2 must keep the two newest")
    }

    /// A checkpoint's JSON names its tensors file; one that points outside the directory (here
    /// at /dev/zero, which would be read forever) is skipped, not followed.
    func testTensorsFileOutsideTheDirectoryIsNotRead() throws {
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("CheckpointStoreTests-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: run) }
        let store = CheckpointStore(runDirectory: run)
        let state = try JSONDecoder().decode(CheckpointState.self, from: Data("""
            {"format": "ddp-checkpoint-1", "epoch": 1, "globalStep": 1, "optimizerStep": 1, "seed": 1, "ranks": 1, "globalBatch": 32,
             "monitor": {"wait": 0, "best": 0.5, "bestEpoch": 0, "hasSnapshot": false},
             "tensorsFile": "", "tensorsBytes": 0, "tensorsChecksum": ""}
            """.utf8))
        _ = try store.save(tensors: [StoredTensor(name: "w", shape: [1], floats: [1])], state: state, keep: 3)
        let hostile = """
            {"format": "ddp-checkpoint-1", "epoch": 2, "globalStep": 2, "optimizerStep": 2, "seed": 1, "ranks": 1, "globalBatch": 32,
             "monitor": {"wait": 0, "best": 0.5, "bestEpoch": 0, "hasSnapshot": false},
             "tensorsFile": "../../../../../../dev/zero", "tensorsBytes": 8, "tensorsChecksum": "0"}
            """
        try hostile.write(toFile: store.directory + "/epoch-0002.json", atomically: true, encoding: .utf8)
        let search = store.newestValid()
        XCTAssertEqual(search.checkpoint?.state.epoch, 1)
        XCTAssertTrue(search.skipped.contains { $0.contains("epoch-0002.json") && $0.contains("not a file name") }, "\(search.skipped)")
    }

    /// A preemption checkpoint ("epoch-0004-step-000010": in epoch 4 after its step 10) sorts
    /// after the 3rd epoch's and before the 4th's; one an older ddp named by epochs completed
    /// ("epoch-0003-step-000011") sorts by what its state records.
    func testStepCheckpointsSortBetweenEpochs() throws {
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("CheckpointStoreTests-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: run) }
        let store = CheckpointStore(runDirectory: run)
        func save(epoch: Int, step: Int?) throws {
            let partial = step.map { #", "partialEpoch": {"steps": \#($0), "lossSum": 1, "correct": 1, "samples": 10, "seconds": 0.1}"# } ?? ""
            let json = """
                {"format": "ddp-checkpoint-1", "epoch": \(epoch), "globalStep": 1, "optimizerStep": 1, "seed": 1, "ranks": 1, "globalBatch": 32,
                 "monitor": {"wait": 0, "best": 0.5, "bestEpoch": 0, "hasSnapshot": false},
                 "tensorsFile": "", "tensorsBytes": 0, "tensorsChecksum": ""\(partial)}
                """
            let state = try JSONDecoder().decode(CheckpointState.self, from: Data(json.utf8))
            _ = try store.save(tensors: [StoredTensor(name: "w", shape: [1], floats: [Float(epoch * 1000 + (step ?? 0))])], state: state, keep: 10)
        }
        try save(epoch: 3, step: nil)
        try save(epoch: 3, step: 10)
        XCTAssertEqual(try XCTUnwrap(store.newestValid().checkpoint).state.partialEpoch?.steps, 10)
        try save(epoch: 3, step: 9)     // older stop, written later: order is by numbers, not by time
        try save(epoch: 4, step: nil)
        XCTAssertEqual(store.stems(), ["epoch-0003", "epoch-0004-step-000009", "epoch-0004-step-000010", "epoch-0004"])
        try FileManager.default.moveItem(atPath: store.directory + "/epoch-0004-step-000010.json",
                                         toPath: store.directory + "/epoch-0003-step-000010.json")
        XCTAssertEqual(store.stems(), ["epoch-0003", "epoch-0004-step-000009", "epoch-0003-step-000010", "epoch-0004"])
        XCTAssertEqual(try XCTUnwrap(store.newestValid().checkpoint).tensors["w"]?.floats(), [4000])
    }
}
