import DDPCore

extension ComparisonVariant {
    /// `ddp compare --repeats R`: each variant once per seed seed, seed + 1, …, seed + R − 1, each
    /// loaded with `--set seed=S` after its other overrides (so a generated data set without its
    /// own seed follows the seed too, as it would by hand) and named `<variant>/seed-S`: a
    /// directory of its own under the variant's, a TensorBoard run of its own. The report's
    /// `RepeatedComparison.table` groups the runs back by that name.
    public static func repeated(_ variants: [ComparisonVariant], repeats: Int) throws -> [ComparisonVariant] {
        guard repeats > 1 else { return variants }
        var result: [ComparisonVariant] = []
        for variant in variants {
            for index in 0..<repeats {
                let seed = variant.config.seed &+ UInt64(index)
                var repeated = variant
                repeated.name = variant.name + "/seed-\(seed)"
                repeated.overrides = variant.overrides + ["seed=\(seed)"]
                repeated.config = index == 0 ? variant.config : try TrainingConfig.load(path: variant.configPath, overrides: repeated.overrides)
                result.append(repeated)
            }
        }
        return result
    }
}
