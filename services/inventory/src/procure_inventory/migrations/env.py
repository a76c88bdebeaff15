from procure_inventory.models import metadata
from procure_runtime.migrate import run_env

run_env(metadata)
