import Foundation
import XCTest

/// `ddp bench` end to end on a small config: every case is a real `ddp train` (under mpirun for
/// two ranks, as two plain processes at once for the no-communication ceiling), and what it
/// writes holds the figures of the runs it made. Nothing here is timed against a target.
final class BenchTests: IntegrationTestCase {
    func testBenchRunsEveryCaseAndWritesItsFigures() throws {
        let config = try writeConfig("moons.yaml", """
            seed: 3
            data:
              train: {format: moons, samples: 2000, noise: 0.2}
              validation_split: 0.2
            model:
              inputs: 2
              layers:
                - {type: dense, units: 32, activation: relu}
                - {type: batchnorm}
                - {type: dense, units: 2}
            loss: cross_entropy
            optimizer: {type: adam, lr: 0.01}
            training: {epochs: 2, batch_size: 64}
            logging: {tensorboard: false}
            """)
        let out = path("bench")
        // Up to 4 rounds where the host moves its cores apart, each checked case up to 4 runs.
        let result = try runDDP(np: nil, ["bench", config, "--ranks", "1,2", "--repeats", "2", "--epochs", "2", "--layout-wait", "1", "--out", out],
                                timeout: 300)
        XCTAssertEqual(result.status, 0, "ddp bench failed:\n\(result.tail)")
        guard result.status == 0 else { return }

        let document = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/bench.json"))) as? [String: Any])
        let cases = try XCTUnwrap(document["cases"] as? [[String: Any]])
        let names = cases.compactMap { $0["name"] as? String }
        XCTAssertEqual(names, ["np=1", "1 process × 2 threads", "np=2 strong", "np=2 strong, no comm", "np=2 weak", "np=2 weak, no comm"])
        let kernels = try Integration.expectedBLASCore()
        let rounds = try XCTUnwrap(document["rounds"] as? [[String: [String: Any]]])
        XCTAssertTrue((2...4).contains(rounds.count), "\(rounds.count) rounds for --repeats 2 (rounds left out are made again, at most 2 more)")
        for (index, round) in rounds.enumerated() {
            for name in names {
                let figures = try XCTUnwrap(round[name], "round \(index + 1) has no \(name)")
                let rate = try XCTUnwrap(figures["samplesPerSecond"] as? Double)
                XCTAssertGreaterThan(rate, 0, "\(name), round \(index + 1)")
                let shares = try XCTUnwrap(figures["shares"] as? [Double])
                XCTAssertEqual(shares.count, 4, name)
                XCTAssertTrue(Integration.sameTier(figures["blasCore"] as? String, kernels.core),
                              "\(name), round \(index + 1): the kernels its run recorded, \(figures["blasCore"] ?? "none"), against \(kernels.core)")
                XCTAssertLessThanOrEqual(shares.reduce(0, +), 1.0001, "\(name): shares of epoch time sum above 1")
                // Runs sharing data across cores were checked for the host's core layout and
                // run again while it had the cores apart (all but the last of 4 runs must pass).
                let attempts = try XCTUnwrap(figures["attempts"] as? Int, name)
                if name == "np=1" || name.hasSuffix("no comm") {
                    XCTAssertNil(figures["crossCoreSlowdown"], "\(name) runs on one core or shares nothing, yet was checked")
                    XCTAssertNil(figures["crossCoreLimit"], name)
                    XCTAssertEqual(attempts, 1, name)
                } else {
                    let slowdown = try XCTUnwrap(figures["crossCoreSlowdown"] as? Double, "\(name) was not checked")
                    let limit = try XCTUnwrap(figures["crossCoreLimit"] as? Double, name)
                    XCTAssertGreaterThan(slowdown, 0, name)
                    XCTAssertGreaterThan(limit, 0, name)
                    XCTAssertTrue((1...4).contains(attempts), "\(name): \(attempts) attempts")
                    if attempts < 4 { XCTAssertLessThanOrEqual(slowdown, limit, "\(name) was kept with the cores apart after \(attempts) runs") }
                }
                if name.hasSuffix("no comm") || !name.hasPrefix("np=2") {
                    XCTAssertEqual(shares[2], 0, "\(name) ran no collective, yet has a communication share")
                } else {
                    XCTAssertGreaterThan(shares[2], 0, "\(name) ran SyncBatchNorm's and the gradient sync's collectives")
                }
            }
        }
        // Every round's core check is recorded; the summary uses the rounds it kept (those where
        // the host gave both cores and every checked run was within the bench's final layout
        // limit, the one recorded after the last round; all of them if none was), made until 2
        // were kept or 4 run, and each row is the median of those rounds, its speedup the median
        // of their within-round ratios to np=1.
        let availability = try XCTUnwrap(document["coreAvailability"] as? [Double])
        XCTAssertEqual(availability.count, rounds.count)
        XCTAssertTrue(availability.allSatisfy { $0 > 0 && $0 <= 1 }, "\(availability)")
        let limits = try XCTUnwrap(document["layoutLimitAfterRound"] as? [Double])
        XCTAssertEqual(limits.count, rounds.count)
        let finalLimit = limits.last ?? .infinity
        let kept = try XCTUnwrap(document["keptRounds"] as? [Int])
        let expectedKept = rounds.indices.filter { index in
            availability[index] >= 0.9 && rounds[index].values.allSatisfy { ($0["crossCoreSlowdown"] as? Double ?? 1) <= finalLimit }
        }.map { $0 + 1 }
        XCTAssertEqual(kept, expectedKept.isEmpty ? Array(1...rounds.count) : expectedKept)
        XCTAssertTrue(expectedKept.count >= 2 || rounds.count == 4, "stopped after \(rounds.count) rounds with \(expectedKept.count) kept")
        if rounds.count > 2 {
            // An extra round was made only if, before it, fewer than 2 rounds counted under the
            // limit then (the one recorded after the round before it).
            let before = rounds.count - 1
            let limitThen = limits[before - 1]
            let countedThen = (0..<before).filter { index in
                availability[index] >= 0.9 && rounds[index].values.allSatisfy { ($0["crossCoreSlowdown"] as? Double ?? 1) <= limitThen }
            }
            XCTAssertLessThan(countedThen.count, 2, "round \(rounds.count) was made with rounds \(countedThen.map { $0 + 1 }) already counting")
        }
        func median(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        let rows = try XCTUnwrap(document["summary"] as? [[String: Any]])
        for row in rows {
            let name = try XCTUnwrap(row["name"] as? String)
            let used = kept.map { rounds[$0 - 1] }
            let rates = used.compactMap { $0[name]?["samplesPerSecond"] as? Double }
            let ratios = used.compactMap { round -> Double? in
                guard let a = round[name]?["samplesPerSecond"] as? Double, let b = round["np=1"]?["samplesPerSecond"] as? Double else { return nil }
                return a / b
            }
            XCTAssertEqual(try XCTUnwrap(row["samplesPerSecond"] as? Double), median(rates), accuracy: 1e-6, name)
            XCTAssertEqual(try XCTUnwrap(row["speedup"] as? Double), median(ratios), accuracy: 1e-9, name)
        }
        let ratios = try XCTUnwrap(document["ratios"] as? [String: Double])
        XCTAssertNotNil(ratios["np=2 strong / np=2 strong, no comm"])
        XCTAssertNotNil(ratios["np=2 weak / np=2 weak, no comm"])

        // The ceiling's processes trained as two ranks would: each with one rank's batch.
        for (scaling, batch) in [("strong", 32), ("weak", 64)] {
            for process in 0..<2 {
                let saved = try String(contentsOfFile: "\(out)/runs/np=2_\(scaling)_no_comm-r1-p\(process)/config.yaml", encoding: .utf8)
                XCTAssertTrue(saved.contains("batch_size: \(batch)\n"), "\(scaling) ceiling, process \(process): not batch \(batch):\n\(saved)")
            }
        }
        XCTAssertTrue(result.output.contains("np=2 strong, no comm"), result.tail)
        let svg = try String(contentsOfFile: out + "/speedup.svg", encoding: .utf8)
        XCTAssertTrue(svg.contains("strong, no communication (ceiling)") && svg.contains("weak scaling"), "speedup.svg lacks its series")
        let table = try String(contentsOfFile: out + "/table.md", encoding: .utf8)
        let recorded = try XCTUnwrap(rounds[0]["np=1"]?["blasCore"] as? String)
        XCTAssertTrue(table.contains("ddp's runs used OpenBLAS's \(recorded) kernels"), table)
    }
}
