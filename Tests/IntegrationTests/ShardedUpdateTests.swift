import DDPCore
import Foundation
import XCTest

/// The sharded update (ZeRO-1: reduce-scatter, update a 1/N slice, allgather) against the
/// single-allreduce update and against one process, under a real `mpirun`.
final class ShardedUpdateTests: IntegrationTestCase {
    /// Dropout, Gaussian noise, SyncBatchNorm, L1/L2 penalties on both kernels and a bias, AdamW.
    /// 98 parameters: on 4 ranks the blocks are 32 floats, so rank 3 updates 2 parameters and
    /// the padding is 30 floats; kernels and the penalized bias straddle block boundaries.
    static func yaml(epochs: Int, clip: String = "", penalties: Bool = true) -> String {
        let kernel1 = penalties ? ", kernel_regularizer: {l1: 1.0e-3, l2: 1.0e-3}" : ""
        let kernel2 = penalties ? ", kernel_regularizer: {l2: 1.0e-3}, bias_regularizer: {l2: 1.0e-2}" : ""
        return """
        seed: 11
        data:
          train: {format: moons, samples: 243, noise: 0.2}
          validation_split: 0.25
          normalize: standardize
        model:
          inputs: 2
          layers:
            - {type: dense, units: 16, use_bias: false\(kernel1)}
            - {type: gaussian_noise, stddev: 0.1}
            - {type: batchnorm}
            - {type: activation, fn: relu}
            - {type: dropout, rate: 0.2}
            - {type: dense, units: 2\(kernel2)}
        loss: cross_entropy
        optimizer: {type: adamw, lr: 0.01, weight_decay: 0.01\(clip)}
        training: {epochs: \(epochs), batch_size: 30, shuffle: true}
        checkpoint: {every_epochs: 1, keep: 5}
        """
    }

    /// Both sharded transports (node-shared memory, the default on one node, and MPI's
    /// reduce-scatter/allgather) against the single allreduce. MPI's is run twice: with the
    /// default buckets (this model's 98 floats are one reduce-scatter after backward) and with
    /// 2-float buckets, so each layer's gradients start their own reduce-scatter during backward,
    /// and on 4 ranks most buckets leave some ranks nothing to receive.
    func testShardedAndAllreduceUpdatesAgreeOnTwoAndFourRanks() throws {
        let config = try writeConfig("sharded.yaml", Self.yaml(epochs: 4))
        for np in [2, 4] {
            let allreduce = path("allreduce-np\(np)")
            try train(np: np, config: config, runDirectory: allreduce, ["--set", "distributed.sharded_update=false"])
            let reference = try readTensors(allreduce + "/model.safetensors")
            let checkpoint = "checkpoints/epoch-0004.safetensors"
            for (name, flags) in [("shared-memory", [String]()), ("mpi", ["--set", "distributed.shared_memory=false"]),
                                  ("mpi-buckets", ["--set", "distributed.shared_memory=false", "--set", "distributed.bucket_kb=0.008"])] {
                let sharded = path("sharded-\(name)-np\(np)")
                try train(np: np, config: config, runDirectory: sharded, flags)
                assertTensorsClose(reference, try readTensors(sharded + "/model.safetensors"),
                                   tolerance: 1e-6, "np=\(np): sharded (\(name)) vs allreduce weights")
                // The optimizer state gathered from the slices equals the state every rank held whole
                // (1e-5: the second moment accumulates g², whose rounding follows the summation
                // order of each transport; observed 1.4e-6 at np=4).
                assertTensorsClose(try readTensors("\(allreduce)/\(checkpoint)"), try readTensors("\(sharded)/\(checkpoint)"),
                                   tolerance: 1e-5, "np=\(np): sharded (\(name)) vs allreduce checkpoint", only: { $0.hasPrefix("optimizer.") })
                let a = Metrics(runDirectory: allreduce), s = Metrics(runDirectory: sharded)
                assertSeriesClose(a.values("loss"), s.values("loss"), tolerance: 1e-6, "np=\(np) \(name): loss (penalties included)")
                assertSeriesClose(a.values("val_loss"), s.values("val_loss"), tolerance: 1e-6, "np=\(np) \(name): val_loss")
            }
        }
    }

    /// Without penalties or clipping, AdamW on one node never stores the reduced gradient: the
    /// optimizer sums every rank's slot as it reads it. Same weights and moments as the single
    /// allreduce, and the same as the MPI path, which stores it.
    func testUpdateThatSumsTheSlotsAgreesWithAllreduce() throws {
        let config = try writeConfig("plain.yaml", Self.yaml(epochs: 4, penalties: false))
        for np in [2, 4] {
            let allreduce = path("plain-allreduce-np\(np)")
            try train(np: np, config: config, runDirectory: allreduce, ["--set", "distributed.sharded_update=false"])
            let shared = path("plain-shared-np\(np)")
            try train(np: np, config: config, runDirectory: shared)
            assertTensorsClose(try readTensors(allreduce + "/model.safetensors"), try readTensors(shared + "/model.safetensors"),
                               tolerance: 1e-6, "np=\(np): slots summed in the update vs allreduce weights")
            let checkpoint = "checkpoints/epoch-0004.safetensors"
            assertTensorsClose(try readTensors("\(allreduce)/\(checkpoint)"), try readTensors("\(shared)/\(checkpoint)"),
                               tolerance: 1e-5, "np=\(np): moments", only: { $0.hasPrefix("optimizer.") })
        }
    }

    /// Checkpoints hold whole-buffer moments, so a run saved on 4 ranks continues on 2 and on
    /// 1 (re-sharded, or whole), exactly as the uninterrupted 4-rank run does.
    func testCheckpointSavedOnFourRanksResumesOnTwoAndOne() throws {
        let shortConfig = try writeConfig("short.yaml", Self.yaml(epochs: 2))
        let fullConfig = try writeConfig("full.yaml", Self.yaml(epochs: 5))
        let uninterrupted = path("uninterrupted")
        try train(np: 4, config: fullConfig, runDirectory: uninterrupted)
        let saved = path("saved-np4")
        try train(np: 4, config: shortConfig, runDirectory: saved)
        let reference = try readTensors(uninterrupted + "/model.safetensors")
        for np in [2, 1] {
            let resumed = path("resumed-np\(np)")
            try FileManager.default.copyItem(atPath: saved, toPath: resumed)
            try train(np: np == 1 ? nil : np, config: fullConfig, runDirectory: resumed, ["--resume"])
            assertTensorsClose(reference, try readTensors(resumed + "/model.safetensors"), tolerance: 1e-5,
                               "saved on 4 ranks, resumed on \(np), vs uninterrupted on 4")
            XCTAssertEqual(Metrics(runDirectory: resumed).epochNumbers(), [1, 2, 3, 4, 5])
        }
    }

    /// Clipping by global norm under sharding: each rank's share of Σg² rides the totals
    /// allreduce. A threshold below the gradient norm (so every step clips) gives np=1's model.
    func testClippingUnderShardingMatchesOneProcess() throws {
        let config = try writeConfig("clip.yaml", Self.yaml(epochs: 3, clip: ", clip_norm: 0.05"))
        let single = path("clip-np1")
        try train(np: nil, config: config, runDirectory: single)
        let reference = try readTensors(single + "/model.safetensors")
        for np in [2, 4] {
            let run = path("clip-np\(np)")
            try train(np: np, config: config, runDirectory: run)
            assertTensorsClose(reference, try readTensors(run + "/model.safetensors"), tolerance: 1e-5, "clipped, np=\(np) vs np=1")
        }
        // The threshold really clips: without it the model ends elsewhere.
        let unclipped = path("unclipped")
        try train(np: nil, config: try writeConfig("noclip.yaml", Self.yaml(epochs: 3)), runDirectory: unclipped)
        let other = try XCTUnwrap(try readTensors(unclipped + "/model.safetensors")["5.weight"]?.floats())
        let clipped = try XCTUnwrap(reference["5.weight"]?.floats())
        XCTAssertGreaterThan(relativeDifference(clipped, other), 1e-3, "clip_norm 0.05 changed nothing: it never clipped")
    }
}
