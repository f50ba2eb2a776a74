"""A CRI v1 client for encc's containerd tests, speaking to containerd's CRI plugin over its
gRPC socket as kubelet does (runtime.v1 RuntimeService and ImageService, api.proto beside this
file). It reads one JSON request per line on stdin and answers one JSON line on stdout:

    {"service": "RuntimeService", "method": "RunPodSandbox", "request": {...}, "timeout": 60}
    -> {"ok": {...response...}}  or  {"error": {"code": "NOT_FOUND", "details": "..."}}

Messages are in protobuf's JSON mapping with the .proto field names; every field is present
in answers (defaults included). Needs Debian's python3-grpcio and python3-grpc-tools (only
its protoc, to compile api.proto into a descriptor set at start).

usage: python3 cri.py SOCKET
"""

import json
import os
import sys
import tempfile

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))


def load_file_descriptor():
    """api.proto compiled by grpc_tools' protoc, as a descriptor of a fresh pool."""
    with tempfile.TemporaryDirectory(prefix="encc-cri-") as tmp:
        out = os.path.join(tmp, "api.desc")
        rc = protoc.main(["protoc", "-I" + HERE, "--descriptor_set_out=" + out, "api.proto"])
        if rc != 0:
            raise SystemExit(f"cri.py: protoc failed on {HERE}/api.proto (exit {rc})")
        with open(out, "rb") as f:
            fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fdp in fds.file:
        pool.Add(fdp)
    return pool.FindFileByName("api.proto")


def message_class(desc):
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


class Client:
    def __init__(self, socket_path):
        self.file = load_file_descriptor()
        self.channel = grpc.insecure_channel("unix://" + socket_path)
        self.calls = {}

    def call(self, service, method, request, timeout):
        key = (service, method)
        if key not in self.calls:
            svc = self.file.services_by_name.get(service)
            if svc is None or method not in svc.methods_by_name:
                raise KeyError(f"{service}.{method} is not in api.proto")
            m = svc.methods_by_name[method]
            req_cls = message_class(m.input_type)
            resp_cls = message_class(m.output_type)
            stub = self.channel.unary_unary(
                f"/{svc.full_name}/{method}",
                request_serializer=lambda msg: msg.SerializeToString(),
                response_deserializer=resp_cls.FromString,
            )
            self.calls[key] = (req_cls, stub)
        req_cls, stub = self.calls[key]
        msg = json_format.ParseDict(request, req_cls())
        resp = stub(msg, timeout=timeout)
        return json_format.MessageToDict(
            resp, preserving_proto_field_name=True, including_default_value_fields=True
        )


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: cri.py SOCKET")
    client = Client(sys.argv[1])
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            answer = {
                "ok": client.call(
                    req["service"], req["method"], req.get("request", {}), req.get("timeout", 60)
                )
            }
        except grpc.RpcError as e:
            answer = {"error": {"code": e.code().name, "details": e.details() or ""}}
        except (KeyError, ValueError, json_format.ParseError) as e:
            answer = {"error": {"code": "CLIENT", "details": f"{type(e).__name__}: {e}"}}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
