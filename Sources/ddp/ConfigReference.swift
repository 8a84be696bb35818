import ArgumentParser
import DDPCore

/// `ddp config-reference`: docs/CONFIG.md, every config key with its type and default as the
/// parser reads them (`ConfigReference`). Hidden: launch/docs writes and checks the file.
struct ConfigReferenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config-reference",
        abstract: "Print the config reference (docs/CONFIG.md) as the parser defines it.",
        shouldDisplay: false)

    func run() throws {
        print(try ConfigReference.markdown(), terminator: "")
    }
}
