/**
 * A map whose first key, set while it is empty, is kept in fields beside a Map of the others: the one
 * key that comes and goes again and again (a lock taken and released, the key a write hid until it is
 * committed) never touches the Map. A Map emptied by a deletion shrinks its table, and one cleared
 * remakes it — a runtime call and an allocation each time, a good part of what a lock cost.
 *
 * It reads as a ReadonlyMap and is written through set, delete and clear, as a Map is (not declared a
 * Map: the runtimes' libraries add methods to Map that this need not have). It is iterated in the order
 * its keys were set, as a Map is: the key beside the Map was set while the Map was empty, so before every
 * key in it. (One difference: a key set while the map is being iterated, after the key beside it was
 * passed and when the Map is empty, is not visited.)
 */
export class SoleKeyMap<K, V> implements ReadonlyMap<K, V> {
  #hasSole = false;
  #soleKey: K | undefined;
  #sole: V | undefined;
  readonly #others = new Map<K, V>();

  get size(): number {
    return this.#others.size + (this.#hasSole ? 1 : 0);
  }

  get [Symbol.toStringTag](): string {
    return "SoleKeyMap";
  }

  get(key: K): V | undefined {
    if (this.#hasSole && key === this.#soleKey) return this.#sole;
    return this.#others.size === 0 ? undefined : this.#others.get(key);
  }

  has(key: K): boolean {
    if (this.#hasSole && key === this.#soleKey) return true;
    return this.#others.size > 0 && this.#others.has(key);
  }

  set(key: K, value: V): this {
    if (this.#hasSole && key === this.#soleKey) this.#sole = value;
    else if (!this.#hasSole && this.#others.size === 0) {
      this.#hasSole = true;
      this.#soleKey = key;
      this.#sole = value;
    } else this.#others.set(key, value);
    return this;
  }

  delete(key: K): boolean {
    if (this.#hasSole && key === this.#soleKey) {
      this.#hasSole = false;
      this.#soleKey = undefined;
      this.#sole = undefined;
      return true;
    }
    return this.#others.size > 0 && this.#others.delete(key);
  }

  clear(): void {
    this.#hasSole = false;
    this.#soleKey = undefined;
    this.#sole = undefined;
    if (this.#others.size > 0) this.#others.clear();
  }

  forEach(callback: (value: V, key: K, map: ReadonlyMap<K, V>) => void, thisArg?: unknown): void {
    for (const [key, value] of this) callback.call(thisArg, value, key, this);
  }

  *entries(): MapIterator<[K, V]> {
    if (this.#hasSole) yield [this.#soleKey as K, this.#sole as V];
    yield* this.#others;
  }

  *keys(): MapIterator<K> {
    for (const [key] of this.entries()) yield key;
  }

  *values(): MapIterator<V> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }
}
