"""Third-party readers of reprovm's attestations (full tier, xtask/tests/testsuite/provenance.rs).

    validate.py cyclonedx FILE...   CycloneDX's own library: strict JSON validation, spec 1.6
    validate.py statement FILE...   in-toto's own reader: the Statement v1 protobuf, parsed
                                    strictly from JSON (no unknown field), then validate()
    validate.py slsa FILE...        the same, and the predicate as in-toto's SLSA Provenance
                                    v1 message, each resolved dependency validated

Prints one line per file; exits 1 on the first document a reader refuses.
"""

import json
import sys


def cyclonedx(text):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise ValueError(str(error))


def statement(text):
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    pb = json_format.Parse(text, statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    return pb


def slsa(text):
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor

    statement(text)
    doc = json.loads(text)
    if doc.get("predicateType") != "https://slsa.dev/provenance/v1":
        raise ValueError("predicateType is not https://slsa.dev/provenance/v1")
    pb = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
    if not pb.build_definition.build_type:
        raise ValueError("buildDefinition.buildType is empty")
    if not pb.run_details.builder.id:
        raise ValueError("runDetails.builder.id is empty")
    for d in pb.build_definition.resolved_dependencies:
        ResourceDescriptor.copy_from_pb(d).validate()


def main():
    kind, files = sys.argv[1], sys.argv[2:]
    check = {"cyclonedx": cyclonedx, "statement": statement, "slsa": slsa}[kind]
    for f in files:
        with open(f, encoding="utf-8") as fh:
            text = fh.read()
        try:
            check(text)
        except Exception as e:  # noqa: BLE001 - every refusal is reported the same way
            print(f"{f}: refused by the {kind} reader: {e}")
            sys.exit(1)
        print(f"{f}: valid ({kind})")


if __name__ == "__main__":
    main()
