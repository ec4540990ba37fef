"""The code file of a registered CTR model (MLflow "models from code"): it names the pyfunc.

`mlflow_model.log_ctr_model` passes this file's path as `python_model=`. MLflow copies the file into
the model folder (and records it as `model_code_path` in the MLmodel); a load runs it as a fresh
module and serves the model `set_model` names. Nothing of the model is pickled: the weights are the
`bundle` artifact, and `r2led_model` travels as the model's `code_paths`, which MLflow puts on
`sys.path` before running this file, so the import below resolves in a process without this
project installed. The import is absolute because MLflow runs the file under a generated name.
"""

from mlflow.models import set_model

from r2led_model.tracking.mlflow_model import CtrPyfuncModel

set_model(CtrPyfuncModel())
