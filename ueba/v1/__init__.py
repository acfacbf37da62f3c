"""Generated protobuf and gRPC stubs for the ueba.v1 API (`make protos`)."""
