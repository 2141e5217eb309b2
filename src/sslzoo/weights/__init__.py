"""Weights I/O: where a model's weights come from, how they are fetched, checked, read, written and converted.

One weight load runs down this package: :mod:`.registered` (a registry entry's weights end to end: a caller's file
or the located one, verified, pinned, converted on first use) -> :mod:`.locate` (the resolution order, over the
:mod:`.sources`: local hub folders, the Hugging Face repository by name or by its listing, a URL) -> the fetchers
(:mod:`.huggingface`, :mod:`.download`, :mod:`.release_listing`, :mod:`.hf_reachable`) and the checks
(:mod:`.checksum`, :mod:`.pins`). :mod:`.hub_folder` opens and writes hub folders (``save_pretrained``,
``push_to_hub``); :mod:`.local_hubs` names the local hub folders and a folder's files; :mod:`.convert` turns an
authors' release into a hub folder. Nothing is imported here, so that the torch-free parts stay torch-free.
"""
