import ArgumentParser
import DDPCore
import DDPExperiments
import Foundation

struct CrossValidate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cv",
        abstract: "k-fold cross-validation on the training data: a run directory per fold, the folds' mean ± std.",
        discussion: """
            The training data (data.train) is split into K folds from a permutation seeded by the config's seed: \
            stratified for cross_entropy and binary_crossentropy (scikit-learn's StratifiedKFold with shuffle), \
            plain KFold for mse. Fold i validates on fold i and trains on the others; data.validation and \
            data.validation_split are replaced and data.test is not used. Each fold trains into OUT/fold-<i> \
            (OUT/<variant>/fold-<i> with --sweep, …/seed-<s>/fold-<i> with --repeats), so tensorboard --logdir OUT \
            shows each as a run. Prints every fold (best epoch, monitored metric, val_accuracy) and their mean ± std \
            (population std, as np.std); with --sweep, one row per variant, the best by the early-stopping monitor \
            (else val_loss) marked *. Under mpirun every fold trains on all ranks, one after another. \
            Example: ddp cv configs/moons.yaml --folds 5 --sweep optimizer.lr=0.1,0.01
            """)

    @Argument(help: "The YAML config.") var config: String
    @OptionGroup var options: ConfigOptions
    @Option(help: "Number of folds K (at least 2, at most the training samples, or the smallest class's samples when stratified).")
    var folds: Int
    @Option(name: .customLong("sweep"),
            help: ArgumentHelp("One variant per value, as ddp compare --sweep (repeatable: every combination).",
                               valueName: "dotted.key=v1,v2,..."))
    var sweeps: [String] = []
    @Option(help: "Repeat the k-fold with seeds seed, seed+1, …: new folds and new initial weights each time.") var repeats = 1
    @Option(help: "Output directory (default runs/<config name>-cv): a run directory per fold, cv.txt, cv.json.") var out: String?
    @Flag(help: "Replace an earlier cv's output in the output directory (otherwise it is kept and cv refuses).") var overwrite = false

    func validate() throws {
        if folds < 2 { throw ValidationError("--folds must be at least 2 (one fold validates, the others train), got \(folds)") }
        if repeats < 1 { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
    }

    func run() throws {
        BLASKernels.selectForThisHost()
        let session = JobSession()
        let crossValidation = CrossValidation(configPath: config, overrides: options.overrides, folds: folds, sweeps: sweeps,
                                              repeats: repeats, outputDirectory: out)
        session.execute {
            let plans = try crossValidation.plans()
            try RunDirectory.refuseEarlierOutput(crossValidation.outputDirectory, markers: ["cv.txt", "cv.json"], command: "ddp cv",
                                                 overwrite: overwrite)
            try session.startCommunicator(watchdogTimeout: CrossValidation.watchdogTimeout(plans)) { communicator in
                let say = { (line: String) in if communicator.isRoot { print(line) } }
                let start = Date()
                crossValidation.header(plans, ranks: communicator.size).forEach(say)
                BLASKernels.announce(isRoot: communicator.isRoot, quiet: false, say: say)
                try crossValidation.run(plans, communicator: communicator, start: start)
            }
        }
    }
}
