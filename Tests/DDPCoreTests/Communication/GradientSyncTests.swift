import Foundation
import XCTest
@testable import DDPCore

/// `GradientSync.gatherGradient` on 2 and 4 ranks as threads (`ThreadCommunicator`): the
/// sharded sync's blocks, through shared memory (the sum stored, or summed in the update) and
/// through the reduce-scatter, give rank 0 the allreduce's gradient bit for bit, and one
/// process's: the summed gradient with the penalties' added, before clipping and weight decay.
final class GradientSyncTests: XCTestCase {
    /// 385 trainable floats: 4 ranks' blocks of 112 leave the last one 49 and padding.
    private static func yaml(penalties: Bool) -> String {
        """
        seed: 5
        data: {train: {format: moons, samples: 96}}
        model:
          inputs: 2
          layers:
            - {type: dense, units: 24, activation: relu\(penalties ? ", kernel_regularizer: {l2: 0.01}" : "")}
            - {type: dense, units: 12, activation: relu\(penalties ? ", kernel_regularizer: {l1: 0.01}" : "")}
            - {type: dense, units: 1}
        loss: {type: binary_crossentropy, from_logits: true}
        optimizer: \(penalties ? "{type: sgd, lr: 0.1, momentum: 0.9, weight_decay: 0.01, clip_norm: 0.001}" : "{type: adamw, lr: 0.01}")
        """
    }

    /// Rank `rank`'s gradient before the sync: multiples of 1/64 below 1, so every order of
    /// summing them is exact and only the sync's own arithmetic can differ.
    private static func localGradient(rank: Int, index: Int) -> Float { Float((index * 7 + rank * 13) % 17 - 8) / 64 }

    private struct RankResult: Sendable {
        var gathered: [Float]?
        var parameters: [Float]
    }

    /// One step's sync on `ranks` threads: every rank's gradient set, reduce, gatherGradient,
    /// update. Returns each rank's gathered gradient and parameters after the update.
    private func syncOnce(ranks: Int, penalties: Bool, overrides: [String] = []) throws -> [RankResult] {
        let config = try TrainingConfig.parse(yaml: Self.yaml(penalties: penalties), overrides: overrides)
        let results = Results<RankResult>(count: ranks)
        try ThreadCommunicator.run(ranks: ranks) { communicator in
            let (network, sync) = try makeNetworkAndSync(config: config, communicator: communicator)
            network.initialize(seed: config.seed)
            for index in 0..<network.trainableCount {
                network.gradients[index] = Self.localGradient(rank: communicator.rank, index: index)
            }
            _ = try sync.reduce(lossSum: 1, samples: 1, correct: 0, nonFinite: false, stop: false)
            let gathered = try sync.gatherGradient()
            try sync.update(lr: 0.1)
            results.set(communicator.rank, RankResult(gathered: gathered, parameters: Array(network.parameters)))
        }
        return try results.all()
    }

    /// One process whose gradient is the ranks' sum.
    private func oneProcess(ranks: Int, penalties: Bool) throws -> (gathered: [Float], plainSum: [Float], weights: [Float], network: Network) {
        let config = try TrainingConfig.parse(yaml: Self.yaml(penalties: penalties))
        let (network, sync) = try makeNetworkAndSync(config: config, communicator: LocalCommunicator())
        network.initialize(seed: config.seed)
        let plainSum = (0..<network.trainableCount).map { index in (0..<ranks).reduce(Float(0)) { $0 + Self.localGradient(rank: $1, index: index) } }
        _ = network.gradients.update(fromContentsOf: plainSum)
        let weights = Array(network.parameters)
        _ = try sync.reduce(lossSum: 1, samples: 1, correct: 0, nonFinite: false, stop: false)
        return (try XCTUnwrap(try sync.gatherGradient()), plainSum, weights, network)
    }

    func testEverySyncGathersTheGradientOfOneProcess() throws {
        for penalties in [true, false] {
            for ranks in [2, 4] {
                let what = "np=\(ranks), \(penalties ? "penalties, clipping and decay" : "AdamW summing in the update")"
                let single = try oneProcess(ranks: ranks, penalties: penalties)
                XCTAssertEqual(single.gathered.count, 385)
                let allreduce = try syncOnce(ranks: ranks, penalties: penalties, overrides: ["distributed.sharded_update=false"])
                let sharedMemory = try syncOnce(ranks: ranks, penalties: penalties)
                let reduceScatter = try syncOnce(ranks: ranks, penalties: penalties, overrides: ["distributed.shared_memory=false"])
                for run in [allreduce, sharedMemory, reduceScatter] {
                    XCTAssertEqual(run[0].gathered, single.gathered, what)
                    for rank in 1..<ranks { XCTAssertNil(run[rank].gathered, "\(what): rank \(rank) gets nothing") }
                    // Gathering leaves the update as it was: every way updates to the allreduce's model
                    // (to rounding: clipping's norm is summed in another order).
                    XCTAssertEqual(run[ranks - 1].parameters, run[0].parameters, "\(what): every rank's model")
                    let worst = zip(run[0].parameters, allreduce[0].parameters).map { abs($0 - $1) }.max() ?? .infinity
                    XCTAssertLessThanOrEqual(worst, 1e-7, "\(what): the updated model")
                }
            }
        }
    }

    /// The gathered gradient is the sum plus the penalties' gradient (Keras: l2 → 2λw, l1 →
    /// λ·sign(w)): neither clipped to norm 0.001 nor with SGD's coupled weight decay (0.01·w),
    /// both of which the update applies after it.
    func testGatheredGradientHasThePenaltiesAndNoClippingOrDecay() throws {
        let single = try oneProcess(ranks: 2, penalties: true)
        var expected = single.plainSum
        for slot in single.network.layout.trainableTensors {
            for index in slot.offset..<slot.offset + slot.count {
                let weight = single.weights[index]
                if slot.name == "0.weight" { expected[index] += 2 * 0.01 * weight }
                if slot.name == "1.weight" && weight != 0 { expected[index] += 0.01 * (weight > 0 ? 1 : -1) }
            }
        }
        XCTAssertNotEqual(single.gathered, single.plainSum, "the penalties are in")
        for (index, (gathered, wanted)) in zip(single.gathered, expected).enumerated() {
            XCTAssertEqual(gathered, wanted, accuracy: 1e-6, "element \(index)")
        }
    }
}
