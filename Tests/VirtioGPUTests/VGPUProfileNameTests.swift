import Testing
import VGPUCore

/// Profile names read right both ways (issue #15): `Ng.Mgb` is N compute units (the share weight)
/// and M GiB, the order and form of MIG's `1g.10gb`; the former names `1g`…`8g` still work.
@Suite struct VGPUProfileNameTests {
    @Test(arguments: [(1, "1g.1gb", "1g"), (2, "2g.2gb", "2g"), (4, "4g.4gb", "4g"), (8, "8g.8gb", "8g")])
    func aNameSaysItsComputeUnitsAndItsMemory(units: Int, name: String, former: String) throws {
        let profile = try #require(VGPUProfile.named[name])
        #expect(profile.name == name && profile.weight == Double(units) && profile.memoryBytes == units << 30)
        #expect(try VGPUProfile(parsing: name) == profile)
        // A former name is the same profile, under its present name.
        #expect(try VGPUProfile(parsing: former) == profile)
        #expect(try VGPUProfile(parsing: "profile=\(former.uppercased())") == profile)
        #expect(VGPUProfile.resolve(former) == profile)
    }

    @Test func theDefaultIsTheSmallestAndAnUnknownNameListsThePresentOnes() throws {
        #expect(try VGPUProfile(parsing: "").name == "1g.1gb")
        #expect(throws: VGPUProfile.ParseError.unknownProfile("3g", known: ["1g.1gb", "2g.2gb", "4g.4gb", "8g.8gb"])) {
            try VGPUProfile(parsing: "3g")
        }
        // Overrides make a custom profile, named so.
        #expect(try VGPUProfile(parsing: "profile=2g.2gb,weight=3").name == "custom")
    }

    @Test func anOperatorsCatalogResolvesFormerNamesOnlyToWhatItHolds() {
        let heavy = VGPUProfile(name: "heavy", memoryBytes: 8 << 30, weight: 8)
        #expect(VGPUProfile.resolve("heavy", in: ["heavy": heavy]) == heavy)
        #expect(VGPUProfile.resolve("4g", in: ["heavy": heavy]) == nil, "a catalog without 4g.4gb has no 4g")
    }
}
