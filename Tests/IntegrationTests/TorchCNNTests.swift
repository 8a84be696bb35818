import DDPCore
import Foundation
import XCTest

/// A whole CNN run against PyTorch, both directions through files a user would pass:
/// torch builds a CNN (conv same and valid, BatchNorm2d, max and average pooling, flatten,
/// dense) and saves its initial state_dict with safetensors; `ddp train` starts from it
/// (`model.init_weights`) on 1 and 2 ranks; torch trains the same batches with AdamW. The
/// per-epoch val_loss and the final weights agree within 1e-5, and torch loads ddp's
/// model.safetensors strictly into its nn.Sequential and computes ddp's last val_loss.
final class TorchCNNTests: IntegrationTestCase {
    private func python() throws -> String {
        let explicit = ProcessInfo.processInfo.environment["DDP_PYTHON"].flatMap { $0.isEmpty ? nil : $0 }
        let python = explicit ?? "/var/cache/ddp-python/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            if explicit != nil { XCTFail("DDP_PYTHON=\(python) is not executable") }
            throw XCTSkip("no Python with torch at \(python); run .ci/run once or set DDP_PYTHON")
        }
        return python
    }

    /// The torch side: `setup DIR` writes the data and the initial weights; `train DIR RUN...`
    /// trains from them and prints, as JSON, torch's per-epoch val_loss, its final tensors and
    /// the val_loss of each ddp run's model.safetensors loaded into a fresh nn.Sequential.
    private let script = """
        import json, sys
        import numpy as np, torch, torch.nn as nn, safetensors.torch
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
        mode, d = sys.argv[1], sys.argv[2]
        def model():
            return nn.Sequential(
                nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(4, 6, 3, bias=True), nn.ReLU(), nn.AvgPool2d(2, stride=1),
                nn.Flatten(), nn.Linear(24, 3))
        if mode == "setup":
            g = np.random.default_rng(3)
            w = g.standard_normal((100, 3)).astype(np.float32)
            for name, n in (("train", 96), ("val", 40)):
                x = g.standard_normal((n, 100)).astype(np.float32)
                np.save(f"{d}/{name}_x.npy", x)
                np.save(f"{d}/{name}_y.npy", np.argmax(x @ w, axis=1).astype(np.int64))
            torch.manual_seed(5)
            safetensors.torch.save_file(model().state_dict(), f"{d}/init.safetensors")
            sys.exit(0)
        def images(name):
            x = torch.from_numpy(np.load(f"{d}/{name}_x.npy")).reshape(-1, 10, 10, 1).permute(0, 3, 1, 2).contiguous()
            return x, torch.from_numpy(np.load(f"{d}/{name}_y.npy"))
        (tx, ty), (vx, vy) = images("train"), images("val")
        def val_loss(m):
            m.eval()
            with torch.no_grad():
                loss = nn.functional.cross_entropy(m(vx), vy).item()
            m.train()
            return loss
        m = model()
        m.load_state_dict(safetensors.torch.load_file(f"{d}/init.safetensors"), strict=True)
        opt = torch.optim.AdamW(m.parameters(), lr=0.01, weight_decay=1e-4)
        losses = []
        for epoch in range(3):
            for start in range(0, 96, 16):
                opt.zero_grad()
                nn.functional.cross_entropy(m(tx[start:start + 16]), ty[start:start + 16]).backward()
                opt.step()
            losses.append(val_loss(m))
        ddp = []
        for run in sys.argv[3:]:
            loaded = model()
            loaded.load_state_dict(safetensors.torch.load_file(f"{run}/model.safetensors"), strict=True)
            ddp.append(val_loss(loaded))
        state = {k: v.reshape(-1).tolist() for k, v in m.state_dict().items() if v.dtype == torch.float32}
        print(json.dumps({"val_loss": losses, "tensors": state, "ddp_val_loss": ddp}))
        """

    func testCNNTrainsAsTorchDoesFromTorchsWeights() throws {
        let python = try python()
        let setup = try runPython(python, ["-c", script, "setup", directory])
        XCTAssertEqual(setup.status, 0, setup.output)
        let config = try writeConfig("cnn.yaml", """
            seed: 1
            data:
              train: {format: npy, features: \(path("train_x.npy")), labels: \(path("train_y.npy"))}
              validation: {format: npy, features: \(path("val_x.npy")), labels: \(path("val_y.npy"))}
              image_shape: [10, 10, 1]
              normalize: none
            model:
              init_weights: \(path("init.safetensors"))
              layers:
                - {type: conv2d, filters: 4, kernel_size: 3, padding: same, use_bias: false}
                - {type: batchnorm}
                - {type: activation, fn: relu}
                - {type: max_pooling2d, pool_size: 2}
                - {type: conv2d, filters: 6, kernel_size: 3}
                - {type: activation, fn: relu}
                - {type: average_pooling2d, pool_size: 2, strides: 1}
                - {type: flatten}
                - {type: dense, units: 3}
            loss: cross_entropy
            optimizer: {type: adamw, lr: 0.01, weight_decay: 1.0e-4, decay: all}
            training: {epochs: 3, batch_size: 16, shuffle: false}
            """)
        let runs = [(1, path("np1")), (2, path("np2"))]
        for (np, run) in runs { try train(np: np, config: config, runDirectory: run) }
        let result = try runPython(python, ["-c", script, "train", directory] + runs.map(\.1))
        XCTAssertEqual(result.status, 0, result.output)
        let line = try XCTUnwrap(result.output.split(separator: "\n").last, result.output)
        let torch = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], result.output)
        let torchLosses = try XCTUnwrap(torch["val_loss"] as? [Double])
        let torchTensors = try XCTUnwrap(torch["tensors"] as? [String: [Double]])
        let loadedLosses = try XCTUnwrap(torch["ddp_val_loss"] as? [Double])
        XCTAssertEqual(torchTensors.keys.sorted(), ["0.weight", "1.bias", "1.running_mean", "1.running_var", "1.weight",
                                                    "4.bias", "4.weight", "8.bias", "8.weight"])
        for ((np, run), loaded) in zip(runs, loadedLosses) {
            let ours = Metrics(runDirectory: run).values("val_loss")
            assertSeriesClose(torchLosses.map { $0 }, ours, tolerance: 1e-5, "val_loss per epoch, np=\(np) vs torch")
            XCTAssertEqual(loaded, try XCTUnwrap(ours.last ?? nil), accuracy: 1e-5, "torch's val_loss of ddp's np=\(np) model")
            let tensors = try readTensors(run + "/model.safetensors")
            for (name, values) in torchTensors {
                let stored = try XCTUnwrap(tensors[name]?.floats(), "\(name) in np=\(np)'s model.safetensors")
                XCTAssertLessThan(relativeDifference(stored, values.map(Float.init)), 1e-5, "\(name), np=\(np) vs torch")
            }
            XCTAssertEqual(tensors["0.weight"]?.shape, [4, 1, 3, 3], "conv kernels as nn.Conv2d's [out, in, kh, kw]")
        }
    }
}
