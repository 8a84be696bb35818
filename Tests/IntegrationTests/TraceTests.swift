import DDPCore
import Foundation
import XCTest

/// `ddp train --trace` under a real `mpirun`: RUN_DIR/trace.json is one JSON array of Chrome
/// trace events with a track per rank, every step's spans, and the collectives inside them.
final class TraceTests: IntegrationTestCase {
    func testTraceHoldsEveryRanksSteps() throws {
        let config = try writeConfig("trace.yaml", """
            seed: 3
            data:
              train: {format: moons, samples: 400, noise: 0.2}
              validation_split: 0.25
            model:
              inputs: 2
              layers:
                - {type: dense, units: 16, use_bias: false}
                - {type: batchnorm}
                - {type: activation, fn: relu}
                - {type: dense, units: 2}
            loss: cross_entropy
            optimizer: {type: adam, lr: 0.01}
            training: {epochs: 3, batch_size: 20}
            checkpoint: {every_epochs: 1, keep: 1}
            """)
        let run = path("traced")
        try train(np: 2, config: config, runDirectory: run, ["--trace"])
        let data = try XCTUnwrap(FileManager.default.contents(atPath: run + "/trace.json"), "no trace.json")
        let events = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [[String: Any]], "trace.json is not a JSON array of objects")
        let names = events.filter { $0["ph"] as? String == "M" && $0["name"] as? String == "process_name" }
            .compactMap { ($0["args"] as? [String: Any])?["name"] as? String }
        XCTAssertEqual(names.sorted(), ["rank 0", "rank 1"], "one named track per rank")

        let spans = events.filter { $0["ph"] as? String == "X" }
        let steps = 3 * 15                                           // 300 training samples, batch 20
        for rank in 0..<2 {
            let mine = spans.filter { ($0["pid"] as? Int) == rank }
            func count(_ name: String) -> Int { mine.filter { $0["name"] as? String == name }.count }
            for name in ["data", "forward", "backward", "update"] {
                XCTAssertEqual(count(name), steps, "rank \(rank): one \(name) span per step")
            }
            XCTAssertEqual(count("validation"), 3, "rank \(rank): one validation span per epoch")
            XCTAssertEqual(count("checkpoint"), 3, "rank \(rank): a checkpoint span per epoch")
            // SyncBatchNorm's two allreduces and the totals' one, per step, at least.
            XCTAssertGreaterThanOrEqual(count("MPI_Allreduce"), 3 * steps, "rank \(rank): collectives are traced")
            for span in mine {
                let duration = try XCTUnwrap(span["dur"] as? Double)
                XCTAssertGreaterThanOrEqual(duration, 0)
                if span["cat"] as? String == "collective", span["name"] as? String == "MPI_Allreduce" {
                    let bytes = try XCTUnwrap((span["args"] as? [String: Any])?["bytes"] as? Int)
                    XCTAssertGreaterThan(bytes, 0, "an allreduce span carries its bytes")
                }
            }
            // Steps follow each other: each update ends before the next data span starts.
            let updates = mine.filter { $0["name"] as? String == "update" }.compactMap { $0["ts"] as? Double }
            XCTAssertEqual(updates, updates.sorted(), "rank \(rank): update spans out of order")
            // Every collective of a step lies inside one of the step's spans (it nests in the timeline).
            let steps = mine.filter { ["forward", "backward", "update"].contains($0["name"] as? String ?? "") }
                .map { (($0["ts"] as? Double) ?? 0, (($0["ts"] as? Double) ?? 0) + (($0["dur"] as? Double) ?? 0)) }
            let barriers = mine.filter { $0["name"] as? String == "MPI_Barrier" }.compactMap { $0["ts"] as? Double }
            XCTAssertFalse(barriers.isEmpty, "the sharded update's barriers (one node) are traced")
            for start in barriers.prefix(20) {
                XCTAssertTrue(steps.contains { $0.0 <= start && start <= $0.1 }, "rank \(rank): a barrier at \(start) outside every step span")
            }
        }
    }
}
