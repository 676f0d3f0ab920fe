"""Training pipeline: WJazzD -> text documents -> small Llama base -> style LoRA adapters.

prepare   SQLite (wjazzd.db layout) -> solos.jsonl + tokenizer + readable text documents
tokenizer word-level tokenizer (one token a number, a chord marker, a prompt word)
pretrain  a small LlamaForCausalLM from scratch with the Hugging Face Trainer
finetune  LoRA (peft) adapters per style on any causal LM; --merge writes a merged model
evaluate  NLL vs a trigram baseline, generated lines vs the humans; markdown + PNG report
"""
