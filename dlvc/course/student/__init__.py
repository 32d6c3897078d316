"""The students' tools, shipped in every handout: ``dlvc submit``, the manifest it reads, the zip it writes,
and the extraction of a notebook's definitions (which the grader uses too, parsing, never running them)."""
