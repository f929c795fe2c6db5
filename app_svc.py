"""Singing voice conversion in the browser and over the API (gradio_client), locally or as a Hugging Face Space.

    python app_svc.py                                   # official 44.1 kHz F0 model (downloaded on first use)
    python app_svc.py --run-name my_voice               # runs/my_voice/ft_model.pth, else its newest checkpoint
    python app_svc.py --config my.yml --checkpoint my.pth --port 7861 --concurrency 2

The page, endpoints and queue live in modules/ui.py; see its docstring for the API.
"""
import modules.zerogpu  # noqa: F401  first: on a ZeroGPU Space `spaces` must load before anything uses CUDA
from modules.ui import SINGING, main

if __name__ == "__main__":
    main(SINGING)
