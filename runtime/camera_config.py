"""`cameras.yaml` -> a validated `RuntimeConfig` for `edgecam run --config`.

Everything is checked before a model loads or a thread starts: a typo fails at once with one line naming the YAML
file, the camera and the key (`cameras.yaml: camera 'door': scenario_config: zones[0].polygon: ...`), not an hour
later mid-run. Relative paths are relative to the YAML file. Every key is described in docs/configuration.md
(`make docs` regenerates it from the models; `edgecam schema cameras` prints the JSON Schema). An example:

    device: {id: store12-cam-box}           # optional; default: the host name. MQTT topics <prefix>/<id>/<camera>/...
                                            #   and the `device` label of every metric
    engine: {workers: 2, threads: 2, mode: latency}  # per shared model: infer requests / pool threads, inference
                                            #   threads, OpenVINO hint (throughput: CPU streams side by side)
    mqtt: {host: 127.0.0.1, port: 1883, prefix: edgecam, qos: 1}   # optional
    http: {host: 127.0.0.1, port: 8080}     # optional: live view, /api, /metrics
    cameras:
      - name: door                          # letters, digits, _ - . (used in topics, URLs, file names)
        source: rtsp://10.0.0.5/stream1     # video file, image folder, camera index, rtsp:// or http(s):// URL
        bundle: bundles/person-detector     # cameras naming the same bundle share one loaded model
        variant: openvino-int8              # optional; default: the manifest's first the backend runs
        backend: openvino                   # or onnxruntime
        device: CPU                         # optional: GPU, NPU, AUTO (openvino); cpu, cuda, tensorrt (onnxruntime)
        classifier: bundles/tamper          # optional second (classify) bundle: tamper or slot states
        rois: [[0, 0, 64, 64]]              # optional classifier regions; default: the scenario's rois() or
                                            #   the whole frame
        scenario: security                  # security | retail | none
        scenario_config: {zones: [{name: door, polygon: [[0, 0], [200, 0], [200, 150]]}]}
        tracker: {max_lost: 1.0}            # optional ByteTracker settings (detection bundles)
        max_fps: 10                         # optional
        stride: 1
        loop: false                         # video files: replay forever (frame index and time run on)
        resolution: [640, 360]              # optional: frames are resized to [width, height]
        motion: {method: mog2, min_area: 0.005, max_skip_seconds: 5, mask: [[[0, 0], [200, 0], [200, 24]]]}
        reconnect: {stall_seconds: 5, max_attempts: null, backoff: {initial: 0.5, early_max: 2, max: 30}}
        sinks: {video: out/door.mp4, jsonl: out/door.jsonl, snapshots: out/door, snapshot_max_count: 200,
                snapshot_max_mb: 50}        # image folders: `images: out/pictures` (one annotated picture each)
"""

from edgecam.runtime.config import (  # the models live in runtime/config/; this module keeps the old import path
    CameraConfig,
    HttpConfig,
    MqttConfig,
    RuntimeConfig,
    SinkConfig,
    load_cameras_config,
    parse_runtime_config,
)
from edgecam.runtime.config.base import NAME

__all__ = [
    "NAME",
    "CameraConfig",
    "HttpConfig",
    "MqttConfig",
    "RuntimeConfig",
    "SinkConfig",
    "load_cameras_config",
    "parse_runtime_config",
]
