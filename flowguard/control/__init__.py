"""The control plane: what an operator changes and reads back, beside the running worker.

Workflow versions on Kafka (:mod:`.store`), the execution log's SQLite projection
(:mod:`.history`), secrets and their masking and sealing (:mod:`.secrets`, :mod:`.masking`),
workflow files (:mod:`.workflow_files`), the JSON Schemas (:mod:`.schema`), topic
administration (:mod:`.kafka_admin`) and the shipped workflow templates
(:mod:`.workflow_templates`). The API and the CLI call it; the engine imports only the pure
helpers of :mod:`.secrets`.
"""
