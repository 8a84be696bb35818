import XCTest
@testable import DDPCore

/// The deterministic mode's arithmetic: one tree over the virtual shards, whichever ranks hold
/// them (`VirtualShards`), and the batch plan that puts each shard's rows together.
final class VirtualShardsTests: XCTestCase {
    /// V values of very different sizes, so the order of their sum shows in its bits.
    private func values(_ count: Int, seed: UInt64) -> [Double] {
        var random = TestRandom(seed: seed)
        return (0..<count).map { index in
            let scale = [1e-9, 1.0, 1e7][index % 3]
            return scale * (Double(random.next() % 1_000_003) / 1_000_003 - 0.5)
        }
    }

    private func fold(_ values: [Double]) -> Double {
        var rows = values
        rows.withUnsafeMutableBufferPointer { VirtualShards.fold($0.baseAddress!, count: $0.count, width: 1) }
        return rows[0]
    }

    /// Each of N ranks folds its shards r, r + N, …, then the ranks' folds fold over r: the
    /// fold of all V shards, bit for bit, for every N dividing V; a sum in rank order is not.
    func testTheRanksFoldsFoldToTheFoldOfAllShards() {
        let shards = 16
        var orderShows = false
        for seed in 1...20 {
            let all = values(shards, seed: UInt64(seed))
            let whole = fold(all)
            for ranks in [1, 2, 4, 8, 16] {
                let rankFolds = (0..<ranks).map { rank in fold(stride(from: rank, to: shards, by: ranks).map { all[$0] }) }
                XCTAssertEqual(fold(rankFolds).bitPattern, whole.bitPattern, "seed \(seed), \(ranks) ranks")
                if rankFolds.reduce(0, +).bitPattern != whole.bitPattern { orderShows = true }
            }
        }
        XCTAssertTrue(orderShows, "the test values never showed the summation order")
    }

    /// The Float gradients' path: each rank's shards folded as `GradientSource(folded:)` folds
    /// the ranks' slots, then the ranks' folds folded again: the fold of all shards, bit for bit.
    func testTheGradientSlotsFoldLikeTheShards() {
        let shards = 16
        for seed in 1...20 {
            let all = values(shards, seed: UInt64(seed)).map { Float($0) }
            func folded(_ terms: [Float]) -> Float {
                terms.withUnsafeBufferPointer {
                    Optimizer.GradientSource($0.baseAddress!, stride: 1, terms: $0.count, folded: true).sum(0)
                }
            }
            let whole = folded(all)
            for ranks in [1, 2, 4, 8, 16] {
                let rankFolds = (0..<ranks).map { rank in folded(stride(from: rank, to: shards, by: ranks).map { all[$0] }) }
                XCTAssertEqual(folded(rankFolds).bitPattern, whole.bitPattern, "seed \(seed), \(ranks) ranks")
            }
        }
    }

    /// With V shards a rank takes the positions it takes without them (r, r + N, …), ordered by
    /// shard: shard v holds positions v, v + V, …; rank r owns shards r, r + N, ….
    func testTheBatchPlanPutsEachShardsRowsTogether() throws {
        var loop = LoopConfig()
        loop.batchSize = 10
        let order = (0..<23).map { Int32(100 + $0) }
        for rank in 0..<2 {
            let plan = try BatchPlan(sampleCount: 23, loop: loop, ranks: 2, rank: rank, virtualShards: 4)
            var rows = [Int32](repeating: -1, count: 10), starts = [Int](repeating: -1, count: 3)
            let count = order.withUnsafeBufferPointer { order in
                plan.localRows(step: 1, order: order.baseAddress!, into: &rows, shardStarts: &starts)
            }
            // Step 1 covers positions 10…19; shard v holds 10 + v, 14 + v, 18 + v.
            let expected: [[Int32]] = rank == 0 ? [[110, 114, 118], [112, 116]] : [[111, 115, 119], [113, 117]]
            XCTAssertEqual(Array(rows[0..<count]), expected.flatMap { $0 }, "rank \(rank)")
            XCTAssertEqual(starts, [0, 3, 5], "rank \(rank)")
            XCTAssertEqual(Set(rows[0..<count]), Set(plan.localPositions(step: 1).map { order[$0] }), "rank \(rank): the rows it takes without shards")
        }
    }
}
